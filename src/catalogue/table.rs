//! The catalogue's table: every error inboxd can meet, as data, and its lookups. Kept whole: one
//! entry per code, in the order docs/errors.md shows them.

use super::*;
use crate::domain::ChannelStatus;

// Shared remedy text. `concat!` accepts these macros because each expands to a string literal.
macro_rules! reauth {
    () => {
        "Re-authorize the channel: press \"Update auth info\" on inboxd's status page, or run `inboxd channel authorize ID` and open the link it prints; sign in as the channel's user (the mailbox's owner, or for a shared mailbox a user with access to it) and accept the permissions."
    };
}
macro_rules! new_secret {
    () => {
        "In the Azure portal (portal.azure.com; portal.azure.us or portal.azure.cn in national clouds) open App registrations → your app → Certificates & secrets → New client secret, pick an expiry and copy the secret's Value at once (it is shown only once; the Secret ID is not the secret). Put the Value in a file and run `inboxd app rotate APP --client-secret-file FILE --expires DATE` (APP is the `tenant/client` id `inboxd app list` shows), or press \"Update secret\" on the status page: every channel of the app uses the new secret at once. The expiry date lets inboxd warn you 30, 14, 7 and 1 days before it lapses. Microsoft recommends a certificate instead (`--client-certificate-file`)."
    };
}
macro_rules! new_certificate {
    () => {
        "Create a new RSA certificate (e.g. `openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 365 -subj /CN=inboxd`), upload cert.pem in the Azure portal under App registrations → your app → Certificates & secrets → Certificates → Upload certificate, then give inboxd both parts: `cat cert.pem key.pem > app.pem && inboxd app rotate APP --client-certificate-file app.pem` (APP is the `tenant/client` id `inboxd app list` shows), or use \"Rotate credential\" on the status page. Every channel of the app uses it at once; inboxd warns 30, 14, 7 and 1 days before a certificate expires."
    };
}
macro_rules! transient {
    () => {
        "Nothing to do: inboxd backs off and retries on its own. If the channel stays in backing_off for more than an hour, check Microsoft's service health (admin.microsoft.com → Health → Service health) and the trace id shown with the error."
    };
}
macro_rules! inboxd_bug {
    () => {
        "This points to a bug in inboxd, not in your setup. Report it with the channel's last error (code, trace id, correlation id and time) from `inboxd channel show ID`."
    };
}
macro_rules! exchange_access {
    () => {
        "In the Exchange admin center (admin.exchange.microsoft.com) open Recipients → Mailboxes → the mailbox → Delegation (or Mailbox permissions) and give the user who authorized the channel \"Read and manage\" (Full Access); allow up to an hour for it to take effect."
    };
}

const fn id(
    code: &'static str,
    name: &'static str,
    meaning: &'static str,
    status: ChannelStatus,
    retry: Retry,
    remedy: &'static str,
) -> Entry {
    Entry {
        code,
        name,
        source: Source::IdentityPlatform,
        meaning,
        status,
        retry,
        severity: Severity::Error,
        remedy,
    }
}

const fn imap(
    code: &'static str,
    name: &'static str,
    meaning: &'static str,
    status: ChannelStatus,
    retry: Retry,
    remedy: &'static str,
) -> Entry {
    Entry {
        code,
        name,
        source: Source::Imap,
        meaning,
        status,
        retry,
        severity: Severity::Error,
        remedy,
    }
}

const fn graph(
    code: &'static str,
    name: &'static str,
    meaning: &'static str,
    status: ChannelStatus,
    retry: Retry,
    remedy: &'static str,
) -> Entry {
    Entry {
        code,
        name,
        source: Source::Graph,
        meaning,
        status,
        retry,
        severity: Severity::Error,
        remedy,
    }
}

const fn own(
    code: &'static str,
    name: &'static str,
    meaning: &'static str,
    status: ChannelStatus,
    retry: Retry,
    severity: Severity,
    remedy: &'static str,
) -> Entry {
    Entry {
        code,
        name,
        source: Source::Inboxd,
        meaning,
        status,
        retry,
        severity,
        remedy,
    }
}

use ChannelStatus::{BackingOff, Blocked, NeedsReauthorization};

/// Code of the fallback entry for an identity-platform `error` value the catalogue does not know.
pub(super) const UNKNOWN_IDENTITY: &str = "unknown_identity_error";
/// Codes of the fallback entries for the token endpoint's HTTP status.
pub(super) const TOKEN_HTTP_429: &str = "token_endpoint_http_429";
pub(super) const TOKEN_HTTP_5XX: &str = "token_endpoint_http_5xx";
/// Codes of the fallback entries for Graph, by HTTP status.
pub(super) const GRAPH_HTTP_400: &str = "graph_http_400";
pub(super) const GRAPH_HTTP_401: &str = "graph_http_401";
pub(super) const GRAPH_HTTP_403: &str = "graph_http_403";
pub(super) const GRAPH_HTTP_404: &str = "graph_http_404";
pub(super) const GRAPH_HTTP_429: &str = "graph_http_429";
pub(super) const GRAPH_HTTP_5XX: &str = "graph_http_5xx";
pub(super) const GRAPH_HTTP_OTHER: &str = "graph_http_other";

static ENTRIES: &[Entry] = &[
    // ---- Identity platform: AADSTS codes -------------------------------------------------------
    id(
        "AADSTS53003",
        "BlockedByConditionalAccess",
        "A Conditional Access policy in the mailbox's tenant does not allow a token to be issued to inboxd.",
        Blocked,
        Retry::No,
        concat!(
            "An Entra admin must find the policy: in the Entra admin center (entra.microsoft.com) open Identity → Monitoring & health → Sign-in logs, pick the failed sign-in for this app and user (match the time or the correlation id inboxd shows), and open its Conditional Access tab, which names the policy that blocked it. Either exclude this app (or the mailbox user) from that policy, or satisfy it (allowed location, client app, device). Then ",
            reauth!()
        ),
    ),
    id(
        "AADSTS530003",
        "DeviceNotManaged",
        "A Conditional Access policy requires a managed or compliant device, and the sign-in did not come from one.",
        Blocked,
        Retry::No,
        concat!(
            "Sign in from a compliant or hybrid-joined device, or have an Entra admin exempt this app from the device requirement (Entra admin center → Protection → Conditional Access → the policy → Target resources → Exclude). The Sign-in logs' Conditional Access tab names the policy. Then ",
            reauth!()
        ),
    ),
    id(
        "AADSTS50076",
        "UserStrongAuthClientAuthNRequired",
        "Multi-factor authentication is required (Conditional Access, per-user MFA or a sign-in from a new location).",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "The user must sign in interactively and complete MFA. ",
            reauth!()
        ),
    ),
    id(
        "AADSTS50079",
        "UserStrongAuthEnrollmentRequired",
        "The user must register multi-factor authentication methods before signing in.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "The mailbox user registers their security info (mysignins.microsoft.com → Security info), then ",
            reauth!()
        ),
    ),
    id(
        "AADSTS50058",
        "UserInformationNotProvided",
        "There was no usable sign-in session for a silent sign-in.",
        NeedsReauthorization,
        Retry::No,
        concat!("An interactive sign-in is needed. ", reauth!()),
    ),
    id(
        "AADSTS65001",
        "DelegationDoesNotExist",
        "Neither the user nor an admin has consented to inboxd's app for the permissions it asks for (Mail.ReadWrite.Shared, or IMAP.AccessAsUser.All for a channel on the IMAP transport, and offline_access). A channel moved to the other transport meets it when the app was consented for one resource only.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "Either re-authorize and accept the permissions when asked, or, if user consent is turned off in the tenant, have an admin grant consent for everyone: Entra admin center → Identity → Applications → Enterprise applications → your app → Permissions → Grant admin consent for the tenant. Then ",
            reauth!()
        ),
    ),
    id(
        "AADSTS70008",
        "ExpiredOrRevokedGrant",
        "The refresh token or authorization code expired or was revoked.",
        NeedsReauthorization,
        Retry::No,
        reauth!(),
    ),
    id(
        "AADSTS700082",
        "ExpiredOrRevokedGrantInactiveToken",
        "The refresh token was not used for 90 days and expired.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            reauth!(),
            " inboxd refreshes tokens of enabled channels on its own, so this usually means the channel was disabled or the daemon was stopped for a long time."
        ),
    ),
    id(
        "AADSTS700084",
        "SpaRefreshTokenExpired",
        "The refresh token was issued to a Single-page application (SPA) redirect URI, whose tokens live only 24 hours.",
        Blocked,
        Retry::No,
        concat!(
            "In the Azure portal open App registrations → your app → Authentication, remove the redirect URI from the Single-page application platform and add it under Web instead (exactly as inboxd shows it). Then ",
            reauth!()
        ),
    ),
    id(
        "AADSTS70000",
        "InvalidGrant",
        "The refresh token was not accepted; this is sometimes intermittent.",
        NeedsReauthorization,
        Retry::OnceAfterDelay,
        concat!(
            "inboxd tries once more after a minute. If the channel still needs re-authorization, ",
            reauth!()
        ),
    ),
    id(
        "AADSTS7000215",
        "InvalidClientSecret",
        "The client secret is wrong; often the secret's ID was entered instead of its Value.",
        Blocked,
        Retry::No,
        concat!(
            "Give inboxd the secret's Value, not its Secret ID (the Value is the long string shown once, when the secret is created). If you no longer have the Value, create a new secret: ",
            new_secret!()
        ),
    ),
    id(
        "AADSTS7000222",
        "InvalidClientSecretExpiredKeysProvided",
        "The app's client secret has expired.",
        Blocked,
        Retry::No,
        new_secret!(),
    ),
    id(
        "AADSTS700027",
        "InvalidClientAssertionSignature",
        "Microsoft refused the app's client assertion: the certificate that signed it is expired, not (or no longer) uploaded to the app registration, or its signature does not verify.",
        Blocked,
        Retry::No,
        concat!(
            "Compare the thumbprint inboxd shows for the app (`inboxd app show APP`) with the certificates listed under the app's Certificates & secrets in the Azure portal; the reason Microsoft gave is in the message. If the certificate is missing or expired: ",
            new_certificate!()
        ),
    ),
    id(
        "AADSTS700024",
        "ClientAssertionNotInValidTimeRange",
        "The client assertion's time range (nbf/exp) does not contain Microsoft's current time: this host's clock is off.",
        BackingOff,
        Retry::Backoff,
        "Synchronize this host's clock (e.g. enable systemd-timesyncd or chrony); inboxd retries on its own and signs each assertion afresh.",
    ),
    id(
        "AADSTS700016",
        "UnauthorizedClient_DoesNotMatchRequest",
        "No app with this client id exists in the tenant inboxd signs in at.",
        Blocked,
        Retry::No,
        "Compare the channel's client id with the Application (client) ID on the app's Overview page in the Azure portal, and its tenant id with the Directory (tenant) ID on the same page; fix them with `inboxd channel update ID`. If the app lives in another tenant it must be multi-tenant and consented in the mailbox's tenant. Check also that inboxd's `[cloud] name` matches the cloud where the app is registered (global, usgov, usgov-dod, china).",
    ),
    id(
        "AADSTS90002",
        "InvalidTenantName",
        "The tenant was not found: the tenant id or domain is wrong, or it belongs to another cloud.",
        Blocked,
        Retry::No,
        "Use the Directory (tenant) ID GUID from the app's Overview page in the Azure portal (`inboxd channel update ID --tenant-id GUID`). If the tenant is in a national cloud (US Government, China), set inboxd's `[cloud] name` to it; a tenant exists in one cloud only.",
    ),
    id(
        "AADSTS50020",
        "UserUnauthorized",
        "The account that signed in does not exist in the app's tenant.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "Sign in with an account of the mailbox's tenant (use a private browser window if the browser picks another account), or have an admin invite the user as a guest. ",
            reauth!()
        ),
    ),
    id(
        "AADSTS500011",
        "InvalidResourceServicePrincipalNotFound",
        "The resource inboxd asked for (Microsoft Graph) was not found in the tenant.",
        Blocked,
        Retry::No,
        "Usually the cloud is wrong: inboxd asked for the Graph of one cloud while signing in at another. Set `[cloud] name` to the cloud of the tenant and leave `cloud.graph_url` unset unless you use a proxy. If the cloud is right, an admin may need to grant consent for Microsoft Graph in the tenant (Enterprise applications → your app → Permissions → Grant admin consent).",
    ),
    id(
        "AADSTS50173",
        "FreshTokenNeeded",
        "The grant was revoked: the user's password was changed or reset, or an admin or the user revoked their sessions.",
        NeedsReauthorization,
        Retry::No,
        reauth!(),
    ),
    id(
        "AADSTS9002313",
        "InvalidRequest",
        "Microsoft rejected the request as malformed.",
        Blocked,
        Retry::No,
        inboxd_bug!(),
    ),
    id(
        "AADSTS50126",
        "InvalidUserNameOrPassword",
        "The user name or password was wrong during the interactive sign-in.",
        NeedsReauthorization,
        Retry::No,
        concat!("Sign in again with the right password. ", reauth!()),
    ),
    id(
        "AADSTS54005",
        "AuthorizationCodeAlreadyRedeemed",
        "The authorization code was redeemed twice, usually because the callback page was reloaded.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "If the status page shows the channel as active, nothing is needed. Otherwise start a new authorization (do not reload the old callback page): ",
            reauth!()
        ),
    ),
    id(
        "AADSTS50034",
        "UserAccountNotFound",
        "The account that signed in is not in the tenant's directory (a typo or the wrong tenant).",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "Check the user name and that the channel's tenant id is the mailbox's tenant; add the user as a guest if needed. ",
            reauth!()
        ),
    ),
    id(
        "AADSTS135010",
        "KeyNotFound",
        "The device's sign-in key is missing.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "Sign in from another device or browser, or re-register the device with the organisation. ",
            reauth!()
        ),
    ),
    id(
        "AADSTS70043",
        "BadTokenDueToSignInFrequency",
        "A Conditional Access sign-in frequency policy requires the user to sign in again.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            reauth!(),
            " To stop this recurring, an Entra admin can exclude this app from the sign-in frequency policy (Entra admin center → Protection → Conditional Access → the policy → Session)."
        ),
    ),
    id(
        "AADSTS50078",
        "UserStrongAuthExpired",
        "The user's multi-factor authentication has expired under the tenant's policy.",
        NeedsReauthorization,
        Retry::No,
        concat!("The user must sign in and complete MFA again. ", reauth!()),
    ),
    id(
        "AADSTS50089",
        "FlowTokenExpired",
        "The sign-in took too long and its flow expired.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "Start the sign-in again and finish it within a few minutes. ",
            reauth!()
        ),
    ),
    id(
        "AADSTS50057",
        "UserDisabled",
        "The mailbox user's account is disabled.",
        Blocked,
        Retry::No,
        concat!(
            "An admin re-enables the account (Microsoft 365 admin center → Users → Active users → the user → Block sign-in off, or Entra admin center → Users → the user → Account enabled). Then ",
            reauth!()
        ),
    ),
    id(
        "AADSTS50055",
        "InvalidPasswordExpiredPassword",
        "The mailbox user's password has expired.",
        NeedsReauthorization,
        Retry::No,
        concat!("The user sets a new password when signing in. ", reauth!()),
    ),
    id(
        "AADSTS50053",
        "IdsLocked",
        "The account is locked after too many failed sign-ins, or the sign-in came from a blocked IP address.",
        Blocked,
        Retry::No,
        concat!(
            "Wait for the lock-out to end or have an admin unblock the account (Entra admin center → Users → the user; Protection → Risky users if it was flagged). Then ",
            reauth!()
        ),
    ),
    id(
        "AADSTS50105",
        "EntitlementGrantsNotFound",
        "The app requires user assignment and the signed-in user is not assigned to it.",
        Blocked,
        Retry::No,
        concat!(
            "An admin assigns the user: Entra admin center → Identity → Applications → Enterprise applications → your app → Users and groups → Add user/group. Then ",
            reauth!()
        ),
    ),
    id(
        "AADSTS65004",
        "UserDeclinedConsent",
        "The user declined the permissions inboxd asked for.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "inboxd needs them to read and mark mail. ",
            reauth!(),
            " Accept the permissions this time, or have an admin grant consent for the tenant."
        ),
    ),
    id(
        "AADSTS50011",
        "InvalidReplyTo",
        "The redirect URI inboxd sent is not registered on the app.",
        Blocked,
        Retry::No,
        concat!(
            "Register the redirect URI exactly as inboxd shows it (the channel's `redirect_uri`, `{server.public_url}/oauth/callback`) in the Azure portal: App registrations → your app → Authentication → Add a platform → Web. Paths are case-sensitive and https is required except for localhost. Then ",
            reauth!()
        ),
    ),
    id(
        "AADSTS7000218",
        "MissingClientSecret",
        "The request carried no client secret although the app is a confidential (Web) client.",
        Blocked,
        Retry::No,
        concat!(
            "Give the channel a client secret. If it has none, create one: ",
            new_secret!()
        ),
    ),
    id(
        "AADSTS700025",
        "InvalidClientPublicClientWithCredential",
        "The app is registered as a public client, which may not send a client secret.",
        Blocked,
        Retry::No,
        "In the Azure portal open App registrations → your app → Authentication, set \"Allow public client flows\" to No and make sure the redirect URI is under the Web platform (not Mobile and desktop). inboxd is a confidential client and always sends its secret.",
    ),
    id(
        "AADSTS501481",
        "CodeVerifierMismatch",
        "The PKCE code verifier did not match the challenge of the authorization.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "Start a new authorization: ",
            reauth!(),
            " If it happens again, report it; it points to a bug in inboxd."
        ),
    ),
    id(
        "AADSTS700005",
        "InvalidGrantRedeemAgainstWrongTenant",
        "The authorization code was issued by another tenant than the one it was redeemed at.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "Check that the channel's tenant id did not change while the authorization was open, then start a new one: ",
            reauth!()
        ),
    ),
    id(
        "AADSTS70011",
        "InvalidScope",
        "Microsoft rejected the permissions (scopes) inboxd asked for.",
        Blocked,
        Retry::No,
        "Check that inboxd's `[cloud] name` is the tenant's cloud (scopes follow the cloud's Graph host). If it is, this points to a bug in inboxd; report it with the channel's last error.",
    ),
    id(
        "AADSTS50194",
        "SingleTenantAppOnCommonEndpoint",
        "A single-tenant app was used at a multi-tenant endpoint (/common or /organizations).",
        Blocked,
        Retry::No,
        "Give the channel the Directory (tenant) ID GUID from the app's Overview page (`inboxd channel update ID --tenant-id GUID`); inboxd always signs in at that tenant.",
    ),
    id(
        "AADSTS90038",
        "NationalCloudTenantRedirection",
        "The tenant belongs to another cloud (global, US Government or China) than the one inboxd signs in at.",
        Blocked,
        Retry::No,
        "Set inboxd's `[cloud] name` to the tenant's cloud (global, usgov, usgov-dod, china) and use an app registered in that cloud; apps and tokens do not cross clouds.",
    ),
    id(
        "AADSTS70002",
        "InvalidClient",
        "Microsoft could not validate the app's credentials: the client secret does not match.",
        Blocked,
        Retry::No,
        concat!(
            "Give inboxd the Value of a current client secret (not its Secret ID). To create one: ",
            new_secret!()
        ),
    ),
    id(
        "AADSTS53000",
        "DeviceNotCompliant",
        "A Conditional Access policy requires a compliant device, and the device used to sign in is not.",
        Blocked,
        Retry::No,
        concat!(
            "Sign in from a compliant (for example Intune-enrolled) device, or have an Entra admin exempt this app from the policy; the Sign-in logs' Conditional Access tab names it. Then ",
            reauth!()
        ),
    ),
    id(
        "AADSTS50131",
        "ConditionalAccessFailed",
        "Conditional Access refused the sign-in (device state, suspicious activity or a security policy).",
        Blocked,
        Retry::No,
        concat!(
            "In the Entra admin center open Sign-in logs, pick the failed sign-in and read its Conditional Access tab and failure reason; change the policy or satisfy it. Then ",
            reauth!()
        ),
    ),
    id(
        "AADSTS50132",
        "SsoArtifactInvalidOrExpired",
        "The sign-in session is no longer valid because the password expired or was changed.",
        NeedsReauthorization,
        Retry::No,
        reauth!(),
    ),
    id(
        "AADSTS50133",
        "SsoArtifactRevoked",
        "The sign-in session was revoked because the password expired or was changed.",
        NeedsReauthorization,
        Retry::No,
        reauth!(),
    ),
    id(
        "AADSTS16000",
        "InteractionRequired",
        "The account that signed in does not exist in the tenant and cannot use the app there.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "Sign in with an account of the mailbox's tenant (a private browser window avoids picking a personal account by mistake). ",
            reauth!()
        ),
    ),
    id(
        "AADSTS700020",
        "InteractionRequired",
        "The grant needs the user to sign in interactively.",
        NeedsReauthorization,
        Retry::No,
        reauth!(),
    ),
    id(
        "AADSTS90094",
        "AdminConsentRequired",
        "An administrator must consent to the app's permissions before users can use it.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "An admin opens Entra admin center → Identity → Applications → Enterprise applications → your app → Permissions → Grant admin consent for the tenant. Then ",
            reauth!()
        ),
    ),
    id(
        "AADSTS650056",
        "MisconfiguredApplication",
        "The app registration does not list the permissions inboxd asks for, or consent is missing.",
        Blocked,
        Retry::No,
        concat!(
            "In the Azure portal open App registrations → your app → API permissions → Add a permission → Microsoft Graph → Delegated permissions and add Mail.ReadWrite.Shared and offline_access; then Grant admin consent if user consent is off. Then ",
            reauth!()
        ),
    ),
    id(
        "AADSTS7000112",
        "UnauthorizedClientApplicationDisabled",
        "The app is disabled in the tenant.",
        Blocked,
        Retry::No,
        "An admin enables it: Entra admin center → Identity → Applications → Enterprise applications → your app → Properties → Enabled for users to sign in: Yes.",
    ),
    id(
        "AADSTS50196",
        "LoopDetected",
        "Microsoft saw too many identical requests from inboxd and suspects a loop.",
        BackingOff,
        Retry::Backoff,
        "inboxd backs off on its own. If it recurs, report it with the channel's last error: inboxd should not ask for tokens this often.",
    ),
    id(
        "AADSTS90055",
        "TenantThrottlingError",
        "Too many sign-in requests for this tenant right now.",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    id(
        "AADSTS50033",
        "RetryableError",
        "A transient error in Microsoft's sign-in service.",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    id(
        "AADSTS50087",
        "SasRetryableError",
        "A transient error in Microsoft's strong-authentication service.",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    id(
        "AADSTS90006",
        "ExternalServerRetryableError",
        "A transient error in a service Microsoft's sign-in depends on.",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    id(
        "AADSTS90024",
        "RequestBudgetExceededError",
        "Microsoft's sign-in service is over its request budget for now.",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    id(
        "AADSTS90033",
        "MsodsServiceUnavailable",
        "Microsoft's directory service is temporarily unavailable.",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    id(
        "AADSTS90090",
        "GraphRetryableError",
        "A transient error in Microsoft's directory.",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    id(
        "AADSTS40010",
        "OAuth2IdPRetryableServerError",
        "A transient error at the identity provider during sign-in.",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    id(
        "AADSTS70012",
        "MsaServerError",
        "A transient error in the Microsoft account service.",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    // ---- Identity platform: OAuth `error` values, when no known AADSTS number came with them ----
    id(
        "access_denied",
        "AccessDenied",
        "The sign-in was cancelled or refused (the user cancelled, declined, or a policy denied access).",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "Read Microsoft's description shown with the error. If the user cancelled, ",
            reauth!()
        ),
    ),
    id(
        "invalid_grant",
        "InvalidGrant",
        "The refresh token or authorization code is invalid, expired or revoked.",
        NeedsReauthorization,
        Retry::No,
        reauth!(),
    ),
    id(
        "invalid_client",
        "InvalidClient",
        "Microsoft did not accept the app's credentials (client id or client secret).",
        Blocked,
        Retry::No,
        concat!(
            "Check the channel's client id against the app's Overview page and that the secret is the Value of a current secret. To replace it: ",
            new_secret!()
        ),
    ),
    id(
        "unauthorized_client",
        "UnauthorizedClient",
        "The app is not allowed to use this flow, or is not known in this tenant.",
        Blocked,
        Retry::No,
        "Check the channel's client id and tenant id against the app's Overview page in the Azure portal, that the app has a Web redirect URI, and that inboxd's `[cloud] name` matches the cloud where the app is registered.",
    ),
    id(
        "interaction_required",
        "InteractionRequired",
        "The user must sign in interactively (MFA, consent or a policy prompt).",
        NeedsReauthorization,
        Retry::No,
        reauth!(),
    ),
    id(
        "login_required",
        "LoginRequired",
        "The user must sign in interactively.",
        NeedsReauthorization,
        Retry::No,
        reauth!(),
    ),
    id(
        "consent_required",
        "ConsentRequired",
        "Consent for inboxd's permissions is missing.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            reauth!(),
            " If user consent is turned off, an admin grants it: Enterprise applications → your app → Permissions → Grant admin consent."
        ),
    ),
    id(
        "temporarily_unavailable",
        "TemporarilyUnavailable",
        "Microsoft's sign-in service is temporarily unavailable.",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    id(
        "server_error",
        "ServerError",
        "Microsoft's sign-in service had an internal error.",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    id(
        "invalid_request",
        "InvalidRequest",
        "Microsoft rejected the request as invalid.",
        Blocked,
        Retry::No,
        "Read Microsoft's description shown with the error: it usually names the parameter. Check the channel's tenant id, client id and redirect URI; if they are right, report it with the channel's last error.",
    ),
    id(
        "invalid_scope",
        "InvalidScope",
        "Microsoft rejected the permissions (scopes) inboxd asked for.",
        Blocked,
        Retry::No,
        "Check that inboxd's `[cloud] name` is the tenant's cloud. If it is, report it with the channel's last error.",
    ),
    id(
        "unsupported_grant_type",
        "UnsupportedGrantType",
        "Microsoft did not accept the kind of token request inboxd made.",
        Blocked,
        Retry::No,
        inboxd_bug!(),
    ),
    id(
        "unsupported_response_type",
        "UnsupportedResponseType",
        "Microsoft did not accept the kind of authorization inboxd asked for.",
        Blocked,
        Retry::No,
        inboxd_bug!(),
    ),
    id(
        "invalid_resource",
        "InvalidResource",
        "The resource inboxd asked for does not exist or is not configured in the tenant.",
        Blocked,
        Retry::No,
        "Set inboxd's `[cloud] name` to the tenant's cloud and leave `cloud.graph_url` unset unless you use a proxy.",
    ),
    id(
        TOKEN_HTTP_429,
        "TokenEndpointThrottled",
        "Microsoft's token endpoint answered HTTP 429: too many requests.",
        BackingOff,
        Retry::Backoff,
        "Nothing to do: inboxd waits at least as long as Microsoft's Retry-After and retries. If it persists, many channels of one tenant may be refreshing at once; report it.",
    ),
    id(
        TOKEN_HTTP_5XX,
        "TokenEndpointServerError",
        "Microsoft's token endpoint answered with an HTTP 5xx server error.",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    id(
        UNKNOWN_IDENTITY,
        "UnknownIdentityError",
        "Microsoft's sign-in service returned an error inboxd does not know.",
        Blocked,
        Retry::No,
        "Read Microsoft's description shown with the error (it starts with the AADSTS number) and look the number up in docs/errors.md or at https://login.microsoftonline.com/error?code=NUMBER. Fix what it names, then re-authorize the channel (\"Update auth info\" or `inboxd channel authorize ID`).",
    ),
    // ---- Microsoft Graph ------------------------------------------------------------------------
    graph(
        "InvalidAuthenticationToken",
        "InvalidAuthenticationToken",
        "Graph rejected the access token (HTTP 401): it expired, or it was issued for another cloud or a revoked grant.",
        NeedsReauthorization,
        Retry::RefreshThenRetryOnce,
        concat!(
            "If a fresh token is rejected too, check that inboxd's `[cloud] name` matches the tenant's cloud, then ",
            reauth!()
        ),
    ),
    graph(
        "ErrorAccessDenied",
        "MailboxAccessDenied",
        "Exchange denied access (HTTP 403): the signed-in user has no access to this mailbox or folder.",
        Blocked,
        Retry::No,
        concat!(
            "With Mail.ReadWrite.Shared the user who authorized the channel must have access to the mailbox in Exchange. ",
            exchange_access!(),
            " Or re-authorize the channel as a user who already has access."
        ),
    ),
    graph(
        "accessDenied",
        "AccessDenied",
        "Graph denied access (HTTP 403): the user or the app lacks a permission.",
        Blocked,
        Retry::No,
        concat!(
            "Check that the app has the delegated Microsoft Graph permission Mail.ReadWrite.Shared (Azure portal → App registrations → your app → API permissions) and that the signed-in user can open the mailbox. ",
            exchange_access!()
        ),
    ),
    graph(
        "Authorization_RequestDenied",
        "AuthorizationRequestDenied",
        "Graph refused the request (HTTP 403): insufficient privileges for the permissions granted.",
        Blocked,
        Retry::No,
        concat!(
            "Add the delegated Microsoft Graph permission Mail.ReadWrite.Shared (Azure portal → App registrations → your app → API permissions → Add a permission), grant consent, then ",
            reauth!()
        ),
    ),
    graph(
        "ErrorItemNotFound",
        "ItemNotFound",
        "The folder (or a message) was not found (HTTP 404); a single message missing when marking it read was moved or deleted and is skipped.",
        Blocked,
        Retry::No,
        "Check the channel's folder: use a well-known name such as inbox or a folder id that exists in this mailbox, and fix it with `inboxd channel update ID --folder FOLDER`.",
    ),
    graph(
        "itemNotFound",
        "ItemNotFoundGraph",
        "The requested item was not found (HTTP 404).",
        Blocked,
        Retry::No,
        "Check the channel's mailbox and folder (`inboxd channel show ID`) and fix them with `inboxd channel update ID`.",
    ),
    graph(
        "ErrorInvalidUser",
        "MailboxNotFound",
        "No mailbox with this address exists (HTTP 404).",
        Blocked,
        Retry::No,
        "Check the channel's mailbox address; for a shared mailbox use its user principal name or primary address as listed in the Exchange admin center → Recipients → Mailboxes. Fix it with `inboxd channel update ID --mailbox ADDRESS`.",
    ),
    graph(
        "MailboxNotEnabledForRESTAPI",
        "MailboxNotEnabledForRestApi",
        "The mailbox cannot be reached through Graph: it is on-premises, inactive, or the user has no Exchange Online licence.",
        Blocked,
        Retry::No,
        "Make sure the mailbox is in Exchange Online: assign an Exchange Online licence to a user mailbox (Microsoft 365 admin center → Users → the user → Licenses and apps), or use a shared mailbox created in Exchange Online. Mailboxes hosted on-premises cannot be read through Graph.",
    ),
    graph(
        "ApplicationThrottled",
        "ApplicationThrottled",
        "Graph throttled inboxd for this mailbox (HTTP 429), usually the limit of four concurrent requests per mailbox.",
        BackingOff,
        Retry::Backoff,
        "Nothing to do: inboxd waits at least Microsoft's Retry-After and retries; other mailboxes are not affected. If it persists, check whether another application is using the same app registration on this mailbox.",
    ),
    graph(
        "TooManyRequests",
        "TooManyRequests",
        "Graph throttled inboxd (HTTP 429).",
        BackingOff,
        Retry::Backoff,
        "Nothing to do: inboxd waits at least Microsoft's Retry-After and retries; other mailboxes are not affected.",
    ),
    graph(
        "activityLimitReached",
        "ActivityLimitReached",
        "Graph throttled the app or user (activity limit reached).",
        BackingOff,
        Retry::Backoff,
        "Nothing to do: inboxd waits at least Microsoft's Retry-After and retries.",
    ),
    graph(
        "serviceNotAvailable",
        "ServiceNotAvailable",
        "Graph is temporarily unavailable (HTTP 503).",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    graph(
        "generalException",
        "GeneralException",
        "Graph had an unexpected internal error (HTTP 500).",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    graph(
        "InefficientFilter",
        "InefficientFilter",
        "Graph found inboxd's query's filter and sort order too complex (HTTP 400).",
        Blocked,
        Retry::No,
        inboxd_bug!(),
    ),
    graph(
        "syncStateNotFound",
        "SyncStateNotFound",
        "Graph no longer knows inboxd's delta sync position for this folder (it expired).",
        BackingOff,
        Retry::ResyncThenRetry,
        "Nothing to do: inboxd reads the folder again from the start; messages already delivered are not delivered again.",
    ),
    graph(
        "resyncRequired",
        "ResyncRequired",
        "Graph asks for a full resync of the folder (HTTP 410).",
        BackingOff,
        Retry::ResyncThenRetry,
        "Nothing to do: inboxd reads the folder again from the start; messages already delivered are not delivered again.",
    ),
    graph(
        GRAPH_HTTP_400,
        "GraphBadRequest",
        "Graph rejected a request as invalid (HTTP 400) with a code inboxd does not know.",
        Blocked,
        Retry::No,
        "Check the channel's mailbox and folder (`inboxd channel show ID`). If they are right, report it with the channel's last error; it may be a bug in inboxd.",
    ),
    graph(
        "insufficient_claims",
        "InsufficientClaims",
        "Graph refused the access token with a Conditional Access claims challenge (HTTP 401, `WWW-Authenticate: … error=\"insufficient_claims\"`): a policy now asks for more (MFA, a compliant device, a fresh sign-in) than the token carries. A refresh cannot meet it.",
        NeedsReauthorization,
        Retry::No,
        concat!(
            "Someone must sign in again so the policy can be met: ",
            reauth!(),
            " If the sign-in itself is refused, see the Conditional Access entries above (AADSTS53003, AADSTS50076)."
        ),
    ),
    graph(
        GRAPH_HTTP_401,
        "GraphUnauthorized",
        "Graph rejected the access token (HTTP 401) with a code inboxd does not know.",
        NeedsReauthorization,
        Retry::RefreshThenRetryOnce,
        concat!(
            "If a fresh token is rejected too, check that inboxd's `[cloud] name` matches the tenant's cloud, then ",
            reauth!()
        ),
    ),
    graph(
        GRAPH_HTTP_403,
        "GraphForbidden",
        "Graph denied access (HTTP 403) with a code inboxd does not know.",
        Blocked,
        Retry::No,
        concat!(
            "The signed-in user probably cannot open this mailbox. ",
            exchange_access!()
        ),
    ),
    graph(
        GRAPH_HTTP_404,
        "GraphNotFound",
        "Graph did not find the mailbox or folder (HTTP 404).",
        Blocked,
        Retry::No,
        "Check the channel's mailbox address and folder (`inboxd channel show ID`) and fix them with `inboxd channel update ID`.",
    ),
    graph(
        GRAPH_HTTP_429,
        "GraphThrottled",
        "Graph throttled inboxd (HTTP 429).",
        BackingOff,
        Retry::Backoff,
        "Nothing to do: inboxd waits at least Microsoft's Retry-After and retries; other mailboxes are not affected.",
    ),
    graph(
        GRAPH_HTTP_5XX,
        "GraphServerError",
        "Graph answered with a server error (HTTP 500, 502, 503 or 504).",
        BackingOff,
        Retry::Backoff,
        transient!(),
    ),
    graph(
        GRAPH_HTTP_OTHER,
        "GraphOtherError",
        "Graph answered with an error status inboxd does not handle specially.",
        Blocked,
        Retry::No,
        "Read the message shown with the error and check the channel's mailbox and folder. If they are right, report it with the channel's last error.",
    ),
    // ---- inboxd's own ---------------------------------------------------------------------------
    own(
        codes::SECRET_EXPIRED,
        "SecretExpired",
        "The client secret's expiry date, as entered in inboxd, has passed.",
        Blocked,
        Retry::No,
        Severity::Error,
        new_secret!(),
    ),
    own(
        codes::SECRET_EXPIRING_SOON,
        "SecretExpiringSoon",
        "The client secret expires within 30 days; the channel keeps working until then.",
        Blocked,
        Retry::No,
        Severity::Warning,
        concat!(
            "Replace the secret before it expires (inboxd warns 30, 14, 7 and 1 days ahead). ",
            new_secret!()
        ),
    ),
    own(
        codes::CERTIFICATE_EXPIRED,
        "CertificateExpired",
        "The app's certificate is past its expiry date (notAfter): Microsoft would refuse every assertion it signs, so inboxd does not ask.",
        Blocked,
        Retry::No,
        Severity::Error,
        new_certificate!(),
    ),
    own(
        codes::CERTIFICATE_EXPIRING_SOON,
        "CertificateExpiringSoon",
        "The app's certificate expires within 30 days; its channels keep working until then.",
        Blocked,
        Retry::No,
        Severity::Warning,
        concat!(
            "Replace the certificate before it expires (inboxd warns 30, 14, 7 and 1 days ahead). ",
            new_certificate!()
        ),
    ),
    own(
        codes::APP_MISSING,
        "AppMissing",
        "The channel's app (tenant and client id) has no record in inboxd, so there is no secret or certificate to sign in with.",
        Blocked,
        Retry::No,
        Severity::Error,
        "Record the app with its credential: `inboxd app add --tenant-id TENANT --client-id CLIENT --client-secret-file FILE` (or `--client-certificate-file`), then `inboxd channel poll ID`.",
    ),
    own(
        codes::EMPTY_AUTHORIZATION_CODE,
        "EmptyAuthorizationCode",
        codes::EMPTY_AUTHORIZATION_CODE_MESSAGE,
        NeedsReauthorization,
        Retry::No,
        Severity::Error,
        concat!(
            "The sign-in came back to inboxd without a code, often because the link was opened twice or edited. Start again from inboxd: ",
            reauth!()
        ),
    ),
    own(
        codes::STATE_UNKNOWN,
        "StateUnknown",
        "The sign-in came back with a state inboxd never issued (an old, copied or forged link, or another inboxd instance).",
        NeedsReauthorization,
        Retry::No,
        Severity::Error,
        concat!(
            "Start the authorization from this inboxd, not from a bookmarked or forwarded Microsoft link, and check that `server.public_url` points at this instance. ",
            reauth!()
        ),
    ),
    own(
        codes::STATE_EXPIRED,
        "StateExpired",
        "The authorization link was opened too long ago and has expired.",
        NeedsReauthorization,
        Retry::No,
        Severity::Error,
        concat!(
            "Get a fresh link and finish the sign-in soon after. ",
            reauth!()
        ),
    ),
    own(
        codes::STATE_REUSED,
        "StateReused",
        "The sign-in's answer reached inboxd twice (the callback page was reloaded or replayed).",
        NeedsReauthorization,
        Retry::No,
        Severity::Error,
        concat!(
            "If the status page shows the channel as active, nothing is needed. Otherwise ",
            reauth!()
        ),
    ),
    imap(
        crate::imap::codes::AUTHENTICATE_FAILED,
        "ImapAuthenticateFailed",
        "The IMAP server refused the XOAUTH2 sign-in (`NO AUTHENTICATE failed.`) even with a freshly refreshed access token.",
        NeedsReauthorization,
        Retry::RefreshThenRetryOnce,
        concat!(
            "Exchange gives the same answer for every cause; check them in this order. (1) IMAP is switched off for the mailbox: in the Exchange admin center open Recipients → Mailboxes → the mailbox → Manage email apps settings and turn IMAP on (or `Set-CASMailbox -Identity MAILBOX -ImapEnabled $true`); a tenant-wide default can also block it. (2) The app lacks the IMAP permission: in the Azure portal open App registrations → your app → API permissions → Add a permission → APIs my organization uses → Office 365 Exchange Online → Delegated → IMAP.AccessAsUser.All, grant consent, then re-authorize. (3) For a shared mailbox, the user who authorized the channel lacks Full Access to it: ",
            exchange_access!(),
            " (4) The token was issued for another audience or has expired: ",
            reauth!()
        ),
    ),
    imap(
        crate::imap::codes::THROTTLED,
        "ImapThrottled",
        "The IMAP server throttles the mailbox or the app (Exchange: `Server Unavailable. 15`, or `Request is throttled. Suggested Backoff Time: N milliseconds`).",
        BackingOff,
        Retry::Backoff,
        "Nothing to do: inboxd backs off (never sooner than the backoff the server suggests) and retries. If it lasts, lower the number of channels on the same mailbox, raise `polling.interval_secs`, or keep `limits.imap_connections_per_mailbox` low: Exchange limits concurrent IMAP connections per mailbox.",
    ),
    imap(
        crate::imap::codes::BYE,
        "ImapBye",
        "The IMAP server closed the connection (`* BYE`, e.g. `Connection is closed. 13`) or it dropped in the middle of a command.",
        BackingOff,
        Retry::Backoff,
        concat!(
            "Nothing to do at first: mail the server had not yet marked `\\Seen` is read again on the next poll and nothing is delivered twice. ",
            transient!()
        ),
    ),
    imap(
        crate::imap::codes::TLS,
        "ImapTlsFailed",
        "The TLS handshake with the IMAP server failed: its certificate is not trusted, has expired or names another host, or the port does not speak TLS.",
        BackingOff,
        Retry::Backoff,
        "Check `cloud.imap_url` (default: the cloud's Exchange Online host on port 993, TLS from the first byte; IMAP with STARTTLS on 143 is not used). A proxy that intercepts TLS must present a certificate of a public CA for that host. inboxd retries on its own once the handshake works.",
    ),
    imap(
        crate::imap::codes::CONNECT,
        "ImapConnectFailed",
        "The IMAP server could not be reached: the name did not resolve, the connection was refused or timed out.",
        BackingOff,
        Retry::Backoff,
        "Check that the host in `cloud.imap_url` (or the cloud's default, e.g. outlook.office365.com) resolves from inboxd's host and that outbound TCP port 993 is open in the firewall. inboxd retries on its own.",
    ),
    imap(
        crate::imap::codes::FOLDER,
        "ImapFolderUnavailable",
        "The IMAP server refused to open the channel's folder: it does not exist under that name, or the signed-in user cannot open it.",
        Blocked,
        Retry::No,
        "IMAP names folders by their path (`INBOX`, `Support/Tickets`), not by Graph's ids: set the folder with `inboxd channel update ID --folder PATH`. For a shared mailbox, check that the authorizing user has Full Access to it.",
    ),
    imap(
        crate::imap::codes::PROTOCOL,
        "ImapCommandFailed",
        "The IMAP server refused a command (`NO` or `BAD`) or sent an answer inboxd cannot read.",
        BackingOff,
        Retry::Backoff,
        concat!(
            "inboxd retries on its own. If it keeps failing, check the server's words in the message; ",
            inboxd_bug!()
        ),
    ),
    own(
        codes::DELTA_UNAVAILABLE,
        "DeltaUnavailable",
        "Graph refused the delta query on the channel's folder (some shared and public folders do not support it), so the channel polls unread mail instead: a message someone reads in Outlook before the poll is not ingested.",
        ChannelStatus::Active,
        Retry::No,
        Severity::Warning,
        "Nothing is needed for mail nobody reads first. To ingest read mail too, point the channel at a folder of the mailbox itself (`inboxd channel update ID --folder inbox`), and check that the signed-in user can open the folder. inboxd tries the delta query again after a restart; `inboxd channel backfill ID --since DATE` fetches what was missed.",
    ),
    own(
        codes::SINK_UNAVAILABLE,
        "SinkUnavailable",
        "The sink (webhook receiver or JSONL file) did not accept a message; the mail stays unread and is retried.",
        BackingOff,
        Retry::Backoff,
        Severity::Error,
        "Check the webhook receiver (it must answer 2xx to `processor.webhook_url`) or that `processor.jsonl_path` is writable with free space. inboxd retries on its own; nothing is lost, and messages that keep failing are quarantined (`inboxd channel show ID`).",
    ),
    own(
        codes::DISK_FULL,
        "DiskFull",
        "The disk holding inboxd's store is full, so inboxd cannot record progress.",
        BackingOff,
        Retry::Backoff,
        Severity::Error,
        "Free space on the file system of `store.path` (or move the store to a bigger disk while inboxd is stopped). inboxd retries on its own once it can write again.",
    ),
    own(
        codes::STORE_READ_ONLY,
        "StoreReadOnly",
        "The store's file system is read-only, so inboxd cannot record progress.",
        BackingOff,
        Retry::Backoff,
        Severity::Error,
        "Make `store.path` writable for inboxd's user; a file system the kernel remounted read-only after disk errors needs checking first. inboxd retries on its own once it can write again.",
    ),
    own(
        codes::STORE_UNAVAILABLE,
        "StoreUnavailable",
        "The store failed to read or write its files, so inboxd cannot record progress; it retries reopening the store (every 1 to 30 s) until it works.",
        BackingOff,
        Retry::Backoff,
        Severity::Error,
        "Nothing, if it passes within a minute. If it stays, look at the log line `The store refuses writes` and the kernel log (`journalctl -k`) for disk errors on the file system of `store.path`.",
    ),
];

/// Every entry, in catalogue order.
pub fn entries() -> &'static [Entry] {
    ENTRIES
}

/// The entry with this code (`AADSTS53003`, `invalid_grant`, `ErrorAccessDenied`, `SecretExpired`).
/// A bare AADSTS number (`53003`) is accepted too. Exact match first, then ASCII case-insensitive.
pub fn lookup(code: &str) -> Option<&'static Entry> {
    let code = code.trim();
    if !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit()) {
        return code.parse().ok().and_then(lookup_aadsts);
    }
    ENTRIES
        .iter()
        .find(|e| e.code == code)
        .or_else(|| ENTRIES.iter().find(|e| e.code.eq_ignore_ascii_case(code)))
}

pub(super) fn lookup_aadsts(number: u32) -> Option<&'static Entry> {
    ENTRIES
        .iter()
        .find(|e| e.source == Source::IdentityPlatform && e.aadsts_number() == Some(number))
}

pub(super) fn lookup_in(source: Source, code: &str) -> Option<&'static Entry> {
    ENTRIES
        .iter()
        .filter(|e| e.source == source)
        .find(|e| e.code == code)
        .or_else(|| {
            ENTRIES
                .iter()
                .filter(|e| e.source == source)
                .find(|e| e.code.eq_ignore_ascii_case(code))
        })
}

/// The entry for a fallback code that the table is known to contain.
pub(super) fn fallback(code: &'static str) -> &'static Entry {
    // Every fallback code is in ENTRIES (the tests check it); the last entry keeps this total.
    ENTRIES
        .iter()
        .find(|e| e.code == code)
        .unwrap_or(&ENTRIES[ENTRIES.len() - 1])
}
