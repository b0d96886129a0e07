//! The catalogue of every error an operator can meet, and the policy for each.
//!
//! One static table ([`entries`]) lists every identity-platform (AADSTS and OAuth `error`) code,
//! every Microsoft Graph error code and every error of inboxd's own that can stop or slow a channel.
//! Each [`Entry`] says what the error means, which [`ChannelStatus`] the channel takes, whether
//! inboxd retries on its own ([`Retry`]) and what the operator should do, in plain words.
//!
//! The rest of inboxd never string-matches Microsoft's errors: it asks [`classify_identity_error`]
//! or [`classify_graph_error`] and acts on the [`Classification`]. `docs/errors.md` is rendered
//! from this table by [`render_errors_markdown`]; a unit test keeps the committed file in step.
//!
//! Pure data and classification: no I/O.

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use crate::domain::ChannelStatus;

/// Who reported the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Microsoft's identity platform (Entra ID): `/authorize` redirects and the `/token` endpoint.
    IdentityPlatform,
    /// Microsoft Graph (the mail API).
    Graph,
    /// inboxd itself: its configuration, its OAuth callback, its sink and its store.
    Inboxd,
}

impl Source {
    /// The snake_case name used in the admin API (`last_error.source`) and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::IdentityPlatform => "identity_platform",
            Source::Graph => "graph",
            Source::Inboxd => "inboxd",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What inboxd does on its own after the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retry {
    /// Nothing: the channel waits for a person (see the remedy).
    No,
    /// Transient: back off exponentially with jitter (never before a `Retry-After`) and retry.
    Backoff,
    /// Retry once after [`RETRY_ONCE_DELAY`]; if the same error comes back, stop and wait for a person.
    OnceAfterDelay,
    /// Refresh the access token and retry the request once; if it fails again, stop.
    RefreshThenRetryOnce,
    /// Drop the delta cursor and start a full sync of the folder at once.
    ResyncThenRetry,
}

impl Retry {
    /// The snake_case name, for logs and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Retry::No => "no",
            Retry::Backoff => "backoff",
            Retry::OnceAfterDelay => "once_after_delay",
            Retry::RefreshThenRetryOnce => "refresh_then_retry_once",
            Retry::ResyncThenRetry => "resync_then_retry",
        }
    }

    /// How docs/errors.md and the status page describe the policy.
    pub fn describe(self) -> &'static str {
        match self {
            Retry::No => "No. inboxd stops using this channel until someone acts.",
            Retry::Backoff => {
                "Yes. inboxd backs off (never earlier than Microsoft's Retry-After) and retries on its own."
            }
            Retry::OnceAfterDelay => {
                "Once, after a minute. If the same error comes back, inboxd stops and waits for you."
            }
            Retry::RefreshThenRetryOnce => {
                "inboxd refreshes the access token and retries once. If that fails too, it stops and waits for you."
            }
            Retry::ResyncThenRetry => {
                "Yes. inboxd forgets its sync position and reads the folder again from the start; nothing is delivered twice."
            }
        }
    }
}

impl fmt::Display for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The delay before the single retry of [`Retry::OnceAfterDelay`].
pub const RETRY_ONCE_DELAY: Duration = Duration::from_secs(60);

/// Whether the entry stops or slows the channel, or only warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The channel takes the entry's status.
    Error,
    /// The channel keeps working; the warning is shown beside it. `status` is what the channel
    /// will take if nobody acts (e.g. `blocked` once a soon-to-expire secret has expired).
    Warning,
}

/// One error inboxd knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The code as the operator sees it: `AADSTS53003`, `invalid_grant`, `ApplicationThrottled`, `SecretExpired`.
    pub code: &'static str,
    /// A readable name, e.g. `BlockedByConditionalAccess`.
    pub name: &'static str,
    /// Who reports it.
    pub source: Source,
    /// What happened, in one sentence.
    pub meaning: &'static str,
    /// The status the channel takes (never `Active`).
    pub status: ChannelStatus,
    /// What inboxd does on its own.
    pub retry: Retry,
    /// Whether it is an error or only a warning.
    pub severity: Severity,
    /// What the operator should do, with concrete steps.
    pub remedy: &'static str,
}

impl Entry {
    /// The AADSTS number, for identity-platform entries that have one.
    pub fn aadsts_number(&self) -> Option<u32> {
        self.code.strip_prefix("AADSTS")?.parse().ok()
    }
}

/// Codes of inboxd's own entries, so callers never spell them twice.
pub mod codes {
    /// The client secret's expiry date (as entered) has passed.
    pub const SECRET_EXPIRED: &str = "SecretExpired";
    /// The client secret expires within 30 days.
    pub const SECRET_EXPIRING_SOON: &str = "SecretExpiringSoon";
    /// The OAuth callback arrived without a code.
    pub const EMPTY_AUTHORIZATION_CODE: &str = "EmptyAuthorizationCode";
    /// The OAuth callback's `state` is not one inboxd issued.
    pub const STATE_UNKNOWN: &str = "StateUnknown";
    /// The OAuth callback's `state` has expired.
    pub const STATE_EXPIRED: &str = "StateExpired";
    /// The OAuth callback's `state` was already used.
    pub const STATE_REUSED: &str = "StateReused";
    /// The sink did not accept a message.
    pub const SINK_UNAVAILABLE: &str = "SinkUnavailable";
    /// The store's disk is full.
    pub const DISK_FULL: &str = "DiskFull";
    /// The store's file system is read-only.
    pub const STORE_READ_ONLY: &str = "StoreReadOnly";
    /// The store failed a read or write (an I/O error) and is being reopened.
    pub const STORE_UNAVAILABLE: &str = "StoreUnavailable";
    /// The exact message shown for [`EMPTY_AUTHORIZATION_CODE`].
    pub const EMPTY_AUTHORIZATION_CODE_MESSAGE: &str =
        "Authorization code should not be empty or null for generating the access token";
}

// Shared remedy text. `concat!` accepts these macros because each expands to a string literal.
macro_rules! reauth {
    () => {
        "Re-authorize the channel: press \"Update auth info\" on inboxd's status page, or run `inboxd channel authorize ID` and open the link it prints; sign in as the channel's user (the mailbox's owner, or for a shared mailbox a user with access to it) and accept the permissions."
    };
}
macro_rules! new_secret {
    () => {
        "In the Azure portal (portal.azure.com; portal.azure.us or portal.azure.cn in national clouds) open App registrations → your app → Certificates & secrets → New client secret, pick an expiry and copy the secret's Value at once (it is shown only once; the Secret ID is not the secret). Put the Value in a file and run `inboxd channel update ID --client-secret-file FILE`, or press \"Update secret\" on the status page; enter the new expiry date as `client_secret_expires_at` so inboxd warns you 30, 14, 7 and 1 days before it lapses."
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
const UNKNOWN_IDENTITY: &str = "unknown_identity_error";
/// Codes of the fallback entries for the token endpoint's HTTP status.
const TOKEN_HTTP_429: &str = "token_endpoint_http_429";
const TOKEN_HTTP_5XX: &str = "token_endpoint_http_5xx";
/// Codes of the fallback entries for Graph, by HTTP status.
const GRAPH_HTTP_400: &str = "graph_http_400";
const GRAPH_HTTP_401: &str = "graph_http_401";
const GRAPH_HTTP_403: &str = "graph_http_403";
const GRAPH_HTTP_404: &str = "graph_http_404";
const GRAPH_HTTP_429: &str = "graph_http_429";
const GRAPH_HTTP_5XX: &str = "graph_http_5xx";
const GRAPH_HTTP_OTHER: &str = "graph_http_other";

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
        "Neither the user nor an admin has consented to inboxd's app for the permissions it asks for (Mail.ReadWrite.Shared, offline_access).",
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

fn lookup_aadsts(number: u32) -> Option<&'static Entry> {
    ENTRIES
        .iter()
        .find(|e| e.source == Source::IdentityPlatform && e.aadsts_number() == Some(number))
}

fn lookup_in(source: Source, code: &str) -> Option<&'static Entry> {
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
fn fallback(code: &'static str) -> &'static Entry {
    // Every fallback code is in ENTRIES (the tests check it); the last entry keeps this total.
    ENTRIES
        .iter()
        .find(|e| e.code == code)
        .unwrap_or(&ENTRIES[ENTRIES.len() - 1])
}

/// What inboxd concluded about one error: the catalogue entry that applies and the code seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    entry: &'static Entry,
    code: Cow<'static, str>,
    known: bool,
}

impl Classification {
    fn known(entry: &'static Entry) -> Self {
        Classification {
            entry,
            code: Cow::Borrowed(entry.code),
            known: true,
        }
    }

    fn fallback(entry: &'static Entry, code: String) -> Self {
        Classification {
            entry,
            code: Cow::Owned(code),
            known: false,
        }
    }

    /// The classification of a catalogue code (inboxd's own, e.g. [`codes::SECRET_EXPIRED`]).
    pub fn of(code: &str) -> Option<Self> {
        lookup(code).map(Classification::known)
    }

    /// The code to show: the most specific one seen (`AADSTS50173`, or `AADSTS12345` when unknown).
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The catalogue entry whose policy applies (a fallback entry when the code is unknown).
    pub fn entry(&self) -> &'static Entry {
        self.entry
    }

    /// Whether the code itself is in the catalogue (false when a fallback entry applies).
    pub fn is_known(&self) -> bool {
        self.known
    }

    /// The status the channel takes.
    pub fn status(&self) -> ChannelStatus {
        self.entry.status
    }

    /// What inboxd does on its own.
    pub fn retry(&self) -> Retry {
        self.entry.retry
    }

    /// Whether inboxd tries again on its own in any form.
    pub fn is_retriable(&self) -> bool {
        self.entry.retry != Retry::No
    }

    /// Whether someone must run the authorization again.
    pub fn needs_reauthorization(&self) -> bool {
        self.entry.status == ChannelStatus::NeedsReauthorization
    }

    /// Whether this is only a warning (the channel keeps working).
    pub fn is_warning(&self) -> bool {
        self.entry.severity == Severity::Warning
    }

    /// What the operator should do.
    pub fn remedy(&self) -> &'static str {
        self.entry.remedy
    }

    /// The readable name of the entry.
    pub fn name(&self) -> &'static str {
        self.entry.name
    }

    /// What the error means, in one sentence.
    pub fn meaning(&self) -> &'static str {
        self.entry.meaning
    }

    /// Who reported the error.
    pub fn source(&self) -> Source {
        self.entry.source
    }
}

impl fmt::Display for Classification {
    /// `AADSTS53003 (BlockedByConditionalAccess): A Conditional Access policy …`, for logs and messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code, self.entry.name, self.entry.meaning
        )
    }
}

/// Every number that follows `AADSTS` in `text`, in order of appearance.
fn aadsts_numbers(text: &str) -> Vec<u32> {
    const PREFIX: &str = "AADSTS";
    let mut numbers = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        rest = &rest[at + PREFIX.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(number) = rest[..digits].parse::<u32>() {
            numbers.push(number);
        }
        rest = &rest[digits..];
    }
    numbers
}

/// Classifies an identity-platform error (an `error=` redirect or a `/token` error response).
///
/// Order: a known number in `error_codes` (the last known one wins; Microsoft puts the most
/// specific last), then a known `AADSTSnnnn` in `error_description`, then HTTP 429 / 5xx, then the
/// `error` value; anything else is `blocked` with a remedy pointing at Microsoft's description.
pub fn classify_identity_error(
    error: &str,
    error_codes: &[u32],
    error_description: Option<&str>,
    http_status: Option<u16>,
) -> Classification {
    if let Some(entry) = error_codes.iter().rev().find_map(|n| lookup_aadsts(*n)) {
        return Classification::known(entry);
    }
    let described = error_description.map(aadsts_numbers).unwrap_or_default();
    if let Some(entry) = described.iter().rev().find_map(|n| lookup_aadsts(*n)) {
        return Classification::known(entry);
    }
    // The most specific unknown number, to show the operator.
    let unknown_number = error_codes.last().or(described.last()).copied();
    let error = error.trim();
    let by_error = if error.is_empty() {
        None
    } else {
        lookup_in(Source::IdentityPlatform, error).filter(|e| e.aadsts_number().is_none())
    };
    let transient_status = match http_status {
        Some(429) => Some(fallback(TOKEN_HTTP_429)),
        Some(500..=599) => Some(fallback(TOKEN_HTTP_5XX)),
        _ => None,
    };
    let entry = match (by_error, transient_status) {
        // A clear error value wins over the status, unless it is one we do not know.
        (Some(entry), _) => entry,
        (None, Some(entry)) => entry,
        (None, None) => fallback(UNKNOWN_IDENTITY),
    };
    match unknown_number {
        Some(number) => Classification::fallback(entry, format!("AADSTS{number}")),
        None if by_error.is_some() => Classification::known(entry),
        None if !error.is_empty() => Classification::fallback(entry, error.to_owned()),
        None => Classification::fallback(entry, entry.code.to_owned()),
    }
}

/// Classifies a Graph error from its HTTP status and the `error.code` of its body (may be empty).
pub fn classify_graph_error(http_status: u16, code: &str) -> Classification {
    let code = code.trim();
    if !code.is_empty()
        && let Some(entry) = lookup_in(Source::Graph, code)
    {
        return Classification::known(entry);
    }
    let entry = fallback(match http_status {
        400 => GRAPH_HTTP_400,
        401 => GRAPH_HTTP_401,
        403 => GRAPH_HTTP_403,
        404 => GRAPH_HTTP_404,
        410 => "resyncRequired",
        429 => GRAPH_HTTP_429,
        500..=599 => GRAPH_HTTP_5XX,
        _ => GRAPH_HTTP_OTHER,
    });
    let shown = if code.is_empty() {
        format!("HTTP {http_status}")
    } else {
        code.to_owned()
    };
    Classification::fallback(entry, shown)
}

fn status_label(status: ChannelStatus) -> &'static str {
    status.as_str()
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn render_section(out: &mut String, title: &str, intro: &str, entries: &[&'static Entry]) {
    let _ = writeln!(out, "## {title}\n\n{intro}\n");
    out.push_str("| Code | Name | Status | Retried by inboxd |\n|---|---|---|---|\n");
    for e in entries {
        let retried = match (e.severity, e.retry) {
            (Severity::Warning, _) => "n/a (a warning)",
            (_, Retry::No) => "no",
            (_, Retry::Backoff) => "yes, with backoff",
            (_, Retry::OnceAfterDelay) => "once, after a minute",
            (_, Retry::RefreshThenRetryOnce) => "once, after a token refresh",
            (_, Retry::ResyncThenRetry) => "yes, after a full resync",
        };
        let status = match e.severity {
            Severity::Error => format!("`{}`", status_label(e.status)),
            Severity::Warning => "unchanged (a warning)".to_owned(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            e.code,
            md_cell(e.name),
            status,
            retried
        );
    }
    out.push('\n');
    for e in entries {
        let _ = writeln!(out, "### `{}`: {}\n", e.code, e.name);
        let _ = writeln!(out, "- **What it means:** {}", e.meaning);
        let status = match e.severity {
            Severity::Error => format!("`{}`", status_label(e.status)),
            Severity::Warning => format!(
                "unchanged (a warning); `{}` if nobody acts",
                status_label(e.status)
            ),
        };
        let _ = writeln!(out, "- **Channel status:** {status}");
        let retried = match e.severity {
            Severity::Error => e.retry.describe(),
            Severity::Warning => {
                "Nothing to retry: the channel keeps working while the warning shows."
            }
        };
        let _ = writeln!(out, "- **Retried?** {retried}");
        let _ = writeln!(out, "- **What to do:** {}\n", e.remedy);
    }
}

/// Renders docs/errors.md from the catalogue.
pub fn render_errors_markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "# Errors inboxd can report\n\n\
<!-- Generated from src/catalogue.rs by `render_errors_markdown`. Do not edit by hand: change the \
catalogue and run `INBOXD_BLESS=1 cargo test --lib catalogue`. -->\n\n\
When a channel stops or slows down, inboxd records its **last error**: where it came from (`source`: \
`identity_platform`, `graph` or `inboxd`), its **code**, Microsoft's trace and correlation ids when given, \
the time, and a **remedy**. You see it on the status page (`GET /` on inboxd's server), in \
`inboxd channel show ID` and `inboxd channel list`, and in the admin API as `last_error` on the channel.\n\n\
How to read this page:\n\n\
- **Code** is what inboxd shows: an AADSTS number from Microsoft's sign-in service (`AADSTS53003`), an \
OAuth error value when Microsoft gave no number (`invalid_grant`), a Microsoft Graph error code \
(`ErrorAccessDenied`), or one of inboxd's own (`SecretExpired`). Search this page for it.\n\
- **Channel status** is what the channel shows next: `backing_off` (inboxd retries on its own), \
`needs_reauthorization` (someone must sign in again: press **Update auth info** on the status page or \
run `inboxd channel authorize ID`), or `blocked` (an admin must change something outside inboxd first, \
usually in Azure, Entra or Exchange).\n\
- **Retried?** says whether inboxd tries again by itself.\n\
- **What to do** is the fix, step by step.\n\n\
When Microsoft sends several AADSTS numbers, inboxd uses the most specific one it knows. A number not \
listed here is shown as it came (for example `AADSTS12345`) with the policy of its OAuth error value \
(`invalid_grant`, `invalid_client`, …); read Microsoft's description that comes with it. \
Setting up the app registration is described in [azure-setup.md](azure-setup.md).\n\n",
    );
    let pick = |pred: &dyn Fn(&Entry) -> bool| -> Vec<&'static Entry> {
        ENTRIES.iter().filter(|e| pred(e)).collect()
    };
    render_section(
        &mut out,
        "Microsoft identity platform: AADSTS codes",
        "Reported by Microsoft's sign-in service (Entra ID) when inboxd redeems an authorization or \
refreshes a token, or on the page the browser returns to after signing in. The Entra admin center's \
Sign-in logs (entra.microsoft.com → Identity → Monitoring & health → Sign-in logs) show the same \
failure with more detail; search them by the correlation id inboxd shows.",
        &pick(&|e| e.source == Source::IdentityPlatform && e.aadsts_number().is_some()),
    );
    render_section(
        &mut out,
        "Microsoft identity platform: OAuth error values and HTTP statuses",
        "Used when Microsoft's answer carries no AADSTS number inboxd knows: inboxd falls back on the \
OAuth `error` value, or on the token endpoint's HTTP status.",
        &pick(&|e| e.source == Source::IdentityPlatform && e.aadsts_number().is_none()),
    );
    render_section(
        &mut out,
        "Microsoft Graph",
        "Reported by Microsoft Graph while inboxd reads a mailbox or marks mail read. Codes named \
`graph_http_…` are used when Graph's code is missing or unknown and only the HTTP status tells.",
        &pick(&|e| e.source == Source::Graph),
    );
    render_section(
        &mut out,
        "inboxd's own",
        "Reported by inboxd itself: its checks of the client secret's expiry date, its OAuth callback, \
its sink and its store.",
        &pick(&|e| e.source == Source::Inboxd),
    );
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every AADSTS number in the reference sheet's §4 table (and §1/§7 mentions the brief names).
    const REFERENCE_AADSTS: &[u32] = &[
        53003, 530003, 50076, 50079, 50058, 65001, 70008, 700082, 700084, 70000, 7000215, 7000222,
        700016, 90002, 50020, 500011, 50173, 9002313, 50126, 54005, 50034, 135010, 70043, 50078,
        50089, 50057, 50055, 50053, 50105, 65004, 50011, 7000218, 700025, 501481, 700005, 70011,
        50196, 90055, 50033, 50087, 90006, 90024, 90033, 90090, 40010, 70012, 50194, 90038,
    ];

    const OAUTH_ERRORS: &[&str] = &[
        "access_denied",
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "interaction_required",
        "consent_required",
        "temporarily_unavailable",
        "server_error",
        "invalid_request",
        "invalid_scope",
        "unsupported_grant_type",
    ];

    const GRAPH_CODES: &[&str] = &[
        "InvalidAuthenticationToken",
        "ErrorAccessDenied",
        "accessDenied",
        "Authorization_RequestDenied",
        "ErrorItemNotFound",
        "ErrorInvalidUser",
        "MailboxNotEnabledForRESTAPI",
        "ApplicationThrottled",
        "TooManyRequests",
        "serviceNotAvailable",
        "generalException",
        "InefficientFilter",
        "syncStateNotFound",
        "resyncRequired",
    ];

    #[test]
    fn every_reference_aadsts_code_is_present() {
        for n in REFERENCE_AADSTS {
            let entry =
                lookup(&format!("AADSTS{n}")).unwrap_or_else(|| panic!("AADSTS{n} missing"));
            assert_eq!(entry.source, Source::IdentityPlatform);
            assert_eq!(entry.aadsts_number(), Some(*n));
            assert_eq!(lookup(&n.to_string()), Some(entry), "bare number {n}");
        }
    }

    #[test]
    fn every_oauth_error_graph_code_and_own_code_is_present() {
        for code in OAUTH_ERRORS {
            assert_eq!(
                lookup(code).unwrap().source,
                Source::IdentityPlatform,
                "{code}"
            );
        }
        for code in GRAPH_CODES {
            assert_eq!(lookup(code).unwrap().source, Source::Graph, "{code}");
        }
        for code in [
            codes::SECRET_EXPIRED,
            codes::SECRET_EXPIRING_SOON,
            codes::EMPTY_AUTHORIZATION_CODE,
            codes::STATE_UNKNOWN,
            codes::STATE_EXPIRED,
            codes::STATE_REUSED,
            codes::SINK_UNAVAILABLE,
            codes::DISK_FULL,
            codes::STORE_READ_ONLY,
            codes::STORE_UNAVAILABLE,
        ] {
            assert_eq!(lookup(code).unwrap().source, Source::Inboxd, "{code}");
        }
        for code in [
            UNKNOWN_IDENTITY,
            TOKEN_HTTP_429,
            TOKEN_HTTP_5XX,
            GRAPH_HTTP_400,
            GRAPH_HTTP_401,
            GRAPH_HTTP_403,
            GRAPH_HTTP_404,
            GRAPH_HTTP_429,
            GRAPH_HTTP_5XX,
            GRAPH_HTTP_OTHER,
        ] {
            assert_eq!(fallback(code).code, code);
        }
    }

    #[test]
    fn empty_code_message_is_exact() {
        let entry = lookup(codes::EMPTY_AUTHORIZATION_CODE).unwrap();
        assert_eq!(
            entry.meaning,
            "Authorization code should not be empty or null for generating the access token"
        );
    }

    #[test]
    fn codes_are_unique_and_entries_complete() {
        let mut seen = HashSet::new();
        for e in entries() {
            assert!(
                seen.insert(e.code.to_ascii_lowercase()),
                "duplicate code {}",
                e.code
            );
            assert!(!e.remedy.trim().is_empty(), "{} has no remedy", e.code);
            assert!(!e.meaning.trim().is_empty(), "{} has no meaning", e.code);
            assert!(!e.name.trim().is_empty(), "{} has no name", e.code);
            assert_ne!(e.status, ChannelStatus::Active, "{}", e.code);
            assert!(
                matches!(e.status, NeedsReauthorization | Blocked | BackingOff),
                "{} has status {}",
                e.code,
                e.status
            );
            // A transient error must be retried, and a retried error must not need a person first.
            if e.status == BackingOff {
                assert_ne!(e.retry, Retry::No, "{}", e.code);
            }
            if e.retry == Retry::Backoff {
                assert_eq!(e.status, BackingOff, "{}", e.code);
            }
        }
    }

    #[test]
    fn remedies_name_inboxd_actions() {
        for code in ["AADSTS50173", "AADSTS70008", "AADSTS700082", "AADSTS53003"] {
            let r = lookup(code).unwrap().remedy;
            assert!(r.contains("Update auth info"), "{code}");
            assert!(r.contains("inboxd channel authorize ID"), "{code}");
        }
        for code in ["AADSTS7000222", "AADSTS7000215", codes::SECRET_EXPIRED] {
            let r = lookup(code).unwrap().remedy;
            assert!(r.contains("Certificates & secrets"), "{code}");
            assert!(r.contains("--client-secret-file"), "{code}");
            assert!(r.contains("Update secret"), "{code}");
        }
        assert!(
            lookup("AADSTS53003")
                .unwrap()
                .remedy
                .contains("Conditional Access tab")
        );
        assert!(
            lookup("AADSTS65001")
                .unwrap()
                .remedy
                .contains("Grant admin consent")
        );
        assert!(
            lookup("AADSTS7000215")
                .unwrap()
                .remedy
                .contains("Secret ID")
        );
    }

    #[test]
    fn invalid_grant_with_revoked_grant_needs_reauthorization() {
        let body: serde_json::Value = serde_json::from_str(
            r#"{"error":"invalid_grant","error_description":"AADSTS70002: Error validating credentials. AADSTS50173: The provided grant has expired due to it being revoked.\r\nTrace ID: x","error_codes":[70002,50173]}"#,
        )
        .unwrap();
        let codes: Vec<u32> = body["error_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| u32::try_from(v.as_u64().unwrap()).unwrap())
            .collect();
        let c = classify_identity_error(
            body["error"].as_str().unwrap(),
            &codes,
            body["error_description"].as_str(),
            Some(400),
        );
        assert!(c.needs_reauthorization());
        assert_eq!(c.code(), "AADSTS50173");
        assert_eq!(c.status(), NeedsReauthorization);
        assert!(!c.is_retriable());
        assert!(c.is_known());
    }

    #[test]
    fn wrong_secret_is_blocked_and_not_retried() {
        let c = classify_identity_error(
            "invalid_client",
            &[7000215],
            Some("AADSTS7000215: Invalid client secret is provided.\r\nTrace ID: t"),
            Some(401),
        );
        assert_eq!(c.status(), Blocked);
        assert_eq!(c.retry(), Retry::No);
        assert!(!c.is_retriable());
        assert_eq!(c.code(), "AADSTS7000215");
        assert!(c.remedy().contains("Value"));
    }

    #[test]
    fn conditional_access_is_blocked_whatever_the_error_value() {
        for error in ["access_denied", "invalid_grant"] {
            let c = classify_identity_error(
                error,
                &[53003],
                Some("AADSTS53003: Access has been blocked by Conditional Access policies."),
                Some(400),
            );
            assert_eq!(c.status(), Blocked, "{error}");
            assert!(!c.is_retriable());
            assert!(!c.needs_reauthorization());
            assert_eq!(c.name(), "BlockedByConditionalAccess");
        }
    }

    #[test]
    fn transient_identity_errors_back_off() {
        let c = classify_identity_error("temporarily_unavailable", &[], None, Some(503));
        assert_eq!(c.status(), BackingOff);
        assert!(c.is_retriable());
        assert_eq!(c.retry(), Retry::Backoff);
        let c = classify_identity_error("server_error", &[], None, None);
        assert_eq!(c.retry(), Retry::Backoff);
        let c = classify_identity_error("", &[], None, Some(429));
        assert_eq!(c.status(), BackingOff);
        assert_eq!(c.code(), TOKEN_HTTP_429);
        let c = classify_identity_error("", &[], None, Some(502));
        assert_eq!(c.status(), BackingOff);
        let c = classify_identity_error("something_new", &[], None, Some(500));
        assert_eq!(c.status(), BackingOff);
        assert_eq!(c.code(), "something_new");
        let c = classify_identity_error("invalid_request", &[90033], None, Some(400));
        assert_eq!(c.retry(), Retry::Backoff);
    }

    #[test]
    fn description_only_number_is_found() {
        let c = classify_identity_error(
            "invalid_grant",
            &[],
            Some(
                "AADSTS700082: The refresh token has expired due to inactivity. The token was issued on 2022-03-02T03:54:33.8043551Z and was inactive for 90.00:00:00.\r\nTrace ID: a\r\nCorrelation ID: b\r\nTimestamp: 2022-06-01 01:02:03Z",
            ),
            Some(400),
        );
        assert!(c.needs_reauthorization());
        assert_eq!(c.code(), "AADSTS700082");
        let c = classify_identity_error(
            "access_denied",
            &[],
            Some("AADSTS65004: User declined to consent to access the app."),
            None,
        );
        assert_eq!(c.code(), "AADSTS65004");
        assert!(c.needs_reauthorization());
    }

    #[test]
    fn seventy_thousand_is_retried_once() {
        let c = classify_identity_error("invalid_grant", &[70000], None, Some(400));
        assert_eq!(c.retry(), Retry::OnceAfterDelay);
        assert!(c.is_retriable());
        assert!(c.needs_reauthorization());
    }

    #[test]
    fn unknown_numbers_fall_back_on_the_error_value() {
        let c = classify_identity_error("invalid_grant", &[99999], None, Some(400));
        assert!(c.needs_reauthorization());
        assert_eq!(c.code(), "AADSTS99999");
        assert!(!c.is_known());
        let c = classify_identity_error("invalid_client", &[99998], None, Some(401));
        assert_eq!(c.status(), Blocked);
        assert_eq!(c.code(), "AADSTS99998");
        let c = classify_identity_error(
            "weird_error",
            &[],
            Some("AADSTS99997: Something new."),
            Some(400),
        );
        assert_eq!(c.status(), Blocked);
        assert_eq!(c.code(), "AADSTS99997");
        assert!(c.remedy().contains("docs/errors.md"));
        assert!(c.remedy().contains("description"));
        let c = classify_identity_error("", &[], None, None);
        assert_eq!(c.status(), Blocked);
        assert_eq!(c.code(), UNKNOWN_IDENTITY);
        // The error value alone, without a number, is a known classification.
        let c = classify_identity_error("consent_required", &[], None, Some(400));
        assert!(c.is_known());
        assert_eq!(c.code(), "consent_required");
        assert!(c.needs_reauthorization());
    }

    #[test]
    fn most_specific_known_code_wins() {
        // Both known: the last one is the most specific.
        let c = classify_identity_error("invalid_grant", &[70008, 50173], None, None);
        assert_eq!(c.code(), "AADSTS50173");
        // A known code in error_codes wins over one only in the description.
        let c = classify_identity_error("invalid_grant", &[70008], Some("AADSTS53003: x"), None);
        assert_eq!(c.code(), "AADSTS70008");
    }

    #[test]
    fn aadsts_parser_handles_edges() {
        assert_eq!(aadsts_numbers("AADSTS1: a AADSTS22: b"), vec![1, 22]);
        assert_eq!(aadsts_numbers("AADSTS: nothing AADSTS"), Vec::<u32>::new());
        assert_eq!(aadsts_numbers("xAADSTS700082:"), vec![700082]);
        assert_eq!(
            aadsts_numbers("AADSTS99999999999999: overflow"),
            Vec::<u32>::new()
        );
        assert_eq!(aadsts_numbers("Ünïcode AADSTS5 ✓"), vec![5]);
    }

    #[test]
    fn graph_errors_classify() {
        let c = classify_graph_error(429, "ApplicationThrottled");
        assert_eq!(c.status(), BackingOff);
        assert_eq!(c.retry(), Retry::Backoff);
        let c = classify_graph_error(401, "InvalidAuthenticationToken");
        assert_eq!(c.retry(), Retry::RefreshThenRetryOnce);
        assert!(c.is_retriable());
        assert_eq!(c.status(), NeedsReauthorization);
        let c = classify_graph_error(403, "ErrorAccessDenied");
        assert_eq!(c.status(), Blocked);
        assert!(c.remedy().contains("Exchange admin center"));
        let c = classify_graph_error(404, "ErrorInvalidUser");
        assert_eq!(c.status(), Blocked);
        let c = classify_graph_error(410, "resyncRequired");
        assert_eq!(c.retry(), Retry::ResyncThenRetry);
        let c = classify_graph_error(400, "syncStateNotFound");
        assert_eq!(c.retry(), Retry::ResyncThenRetry);
        let c = classify_graph_error(400, "InefficientFilter");
        assert_eq!(c.status(), Blocked);
        for status in [500, 503, 504] {
            let c = classify_graph_error(status, "");
            assert_eq!(c.status(), BackingOff, "{status}");
            assert_eq!(c.code(), format!("HTTP {status}"));
        }
        let c = classify_graph_error(503, "serviceNotAvailable");
        assert!(c.is_known());
        let c = classify_graph_error(429, "SomethingNew");
        assert_eq!(c.status(), BackingOff);
        assert_eq!(c.code(), "SomethingNew");
        assert!(!c.is_known());
        let c = classify_graph_error(401, "");
        assert_eq!(c.retry(), Retry::RefreshThenRetryOnce);
        let c = classify_graph_error(403, "ErrorSomethingElse");
        assert_eq!(c.status(), Blocked);
        let c = classify_graph_error(418, "");
        assert_eq!(c.status(), Blocked);
        let c = classify_graph_error(410, "");
        assert_eq!(c.retry(), Retry::ResyncThenRetry);
        // A Graph code is never classified as an identity-platform entry.
        let c = classify_graph_error(400, "invalid_grant");
        assert_eq!(c.source(), Source::Graph);
    }

    #[test]
    fn own_codes_classify() {
        let c = Classification::of(codes::SECRET_EXPIRING_SOON).unwrap();
        assert!(c.is_warning());
        let c = Classification::of(codes::SECRET_EXPIRED).unwrap();
        assert!(!c.is_warning());
        assert_eq!(c.status(), Blocked);
        let c = Classification::of(codes::SINK_UNAVAILABLE).unwrap();
        assert_eq!(c.status(), BackingOff);
        assert!(Classification::of("NoSuchCode").is_none());
        let c = classify_identity_error("invalid_grant", &[53003], None, None);
        assert!(
            c.to_string()
                .starts_with("AADSTS53003 (BlockedByConditionalAccess): ")
        );
    }

    #[test]
    fn errors_markdown_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/errors.md");
        let rendered = render_errors_markdown();
        if std::env::var("INBOXD_BLESS").as_deref() == Ok("1") {
            std::fs::write(&path, &rendered).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == rendered,
            "docs/errors.md is out of date with src/catalogue.rs: run `INBOXD_BLESS=1 cargo test --lib catalogue` to regenerate"
        );
    }

    #[test]
    fn markdown_lists_every_entry() {
        let md = render_errors_markdown();
        for e in entries() {
            assert!(md.contains(&format!("### `{}`", e.code)), "{}", e.code);
        }
        assert!(md.contains("Update auth info"));
    }

    /// GitHub's heading anchor: lower case, punctuation other than `-` and `_` dropped, spaces to `-`.
    fn github_anchor(heading: &str) -> String {
        heading
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn azure_setup_links_into_errors_md_resolve() {
        let md = render_errors_markdown();
        let anchors: HashSet<String> = md
            .lines()
            .filter_map(|l| l.strip_prefix("### "))
            .map(github_anchor)
            .collect();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/azure-setup.md");
        let setup = std::fs::read_to_string(path).unwrap();
        let mut links = 0;
        for part in setup.split("(errors.md#").skip(1) {
            let anchor = part.split(')').next().unwrap();
            assert!(
                anchors.contains(anchor),
                "docs/azure-setup.md links to missing #{anchor}"
            );
            links += 1;
        }
        assert!(
            links >= 10,
            "expected the troubleshooting table's links, found {links}"
        );
    }
}
