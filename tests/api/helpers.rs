use std::time::Duration;

use inboxd::sim::client::{AppRegistration, SimClient};
use inboxd::sim::{SimHandle, SimOptions};
use inboxd_testkit::TestDaemon;
use serde_json::Value;

/// The redirect URI the simulator's apps register (loopback: the port is ignored).
pub const REDIRECT: &str = "http://127.0.0.1/oauth/callback";

/// A simulator and a daemon in a temporary directory.
pub struct World {
    pub daemon: TestDaemon,
    pub sim_client: SimClient,
    pub sim_url: String,
    pub dir: tempfile::TempDir,
    /// Dropped last: stops the simulator.
    pub _sim: SimHandle,
}

/// One provisioned mailbox: tenant, app and user.
#[derive(Debug, Clone)]
pub struct Mailbox {
    pub tenant: String,
    pub client_id: String,
    pub secret: String,
    pub upn: String,
}

pub async fn world(interval_secs: u64, extra: &[(&str, String)]) -> World {
    world_with(SimOptions::default(), interval_secs, extra).await
}

pub async fn world_with(
    options: SimOptions,
    interval_secs: u64,
    extra: &[(&str, String)],
) -> World {
    let sim = inboxd::sim::spawn(options).unwrap();
    let sim_url = sim.url();
    let dir = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(dir.path(), &sim_url, interval_secs, extra)
        .await
        .unwrap();
    World {
        daemon,
        sim_client: SimClient::new(sim_url.clone()),
        sim_url,
        dir,
        _sim: sim,
    }
}

impl World {
    /// Registers a tenant, an app and a user whose mailbox is `upn`.
    pub async fn mailbox(&self, upn: &str) -> Mailbox {
        let domain = upn.split('@').nth(1).unwrap();
        let tenant = self
            .sim_client
            .register_tenant(None, &[domain])
            .await
            .unwrap();
        let app = self
            .sim_client
            .register_app(&AppRegistration {
                tenant_id: tenant.clone(),
                redirect_uris: vec![REDIRECT.to_owned()],
                ..AppRegistration::default()
            })
            .await
            .unwrap();
        self.sim_client
            .register_user(&tenant, upn, &[])
            .await
            .unwrap();
        Mailbox {
            tenant,
            client_id: app.client_id,
            secret: app.client_secret,
            upn: upn.to_owned(),
        }
    }

    /// Adds a channel for the mailbox (not yet authorized).
    pub async fn add(&self, mailbox: &Mailbox) -> String {
        self.daemon
            .add_channel(
                &mailbox.tenant,
                &mailbox.client_id,
                &mailbox.secret,
                &mailbox.upn,
            )
            .await
            .unwrap()
    }

    /// Adds and authorizes a channel; waits until it is active.
    pub async fn active_channel(&self, upn: &str) -> (String, Mailbox) {
        let mailbox = self.mailbox(upn).await;
        let id = self.add(&mailbox).await;
        let (status, page) = self.daemon.authorize(&id).await.unwrap();
        assert_eq!(status, 200, "{page}");
        self.wait_status(&id, "active", Duration::from_secs(5))
            .await;
        (id, mailbox)
    }

    pub async fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        self.daemon
            .wait_channel(id, timeout, |c| c["status"] == status)
            .await
            .unwrap_or_else(|err| panic!("waiting for {status}: {err:#}"))
    }

    /// Requests the simulator counted for a mailbox at an endpoint.
    pub async fn requests(&self, mailbox: &str, endpoint: &str) -> u64 {
        let counters = self.sim_client.counters(Some(mailbox)).await.unwrap();
        counters.requests.get(endpoint).copied().unwrap_or(0)
    }

    /// Polls the simulator counted for a mailbox: pages of the unread list or of a delta round.
    pub async fn polls(&self, mailbox: &str) -> u64 {
        let counters = self.sim_client.counters(Some(mailbox)).await.unwrap();
        ["list_messages", "delta"]
            .iter()
            .map(|e| counters.requests.get(*e).copied().unwrap_or(0))
            .sum()
    }

    /// Requests the simulator counted at an endpoint, all mailboxes together.
    pub async fn total_requests(&self, endpoint: &str) -> u64 {
        let counters = self.sim_client.counters(None).await.unwrap();
        counters.requests.get(endpoint).copied().unwrap_or(0)
    }

    pub async fn poll_now(&self, id: &str) {
        let (status, body) = self
            .daemon
            .api(
                reqwest::Method::POST,
                &format!("/api/channels/{id}/poll"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, 202, "{body}");
    }

    pub async fn fault(&self, spec: Value) -> u64 {
        let answer = self.sim_client.add_fault_json(&spec).await.unwrap();
        answer["id"].as_u64().unwrap_or(0)
    }
}

/// Waits for `check`, failing with `what`.
pub async fn until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}
