//! Simulator throughput: requests per second of an idle-mailbox list call and of a token refresh,
//! with the simulator in-process on one worker; plus the memory cost of 100,000 idle mailboxes.
//!
//! `cargo bench --bench sim`. Each iteration sends 32 concurrent requests over one keep-alive
//! client, spread over 256 provisioned mailboxes (each its own tenant and app), so criterion's
//! "thrpt" figure is requests per second.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inboxd::sim::client::{BulkRequest, SimClient};
use inboxd::sim::{SimOptions, spawn};

const CONCURRENT: usize = 32;
const MAILBOXES: usize = 256;

struct Account {
    tenant: String,
    client_id: String,
    secret: String,
    mailbox: String,
    refresh_token: String,
    access_token: String,
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("cannot build a tokio runtime: {e}");
            std::process::exit(1)
        });
    let sim = match spawn(SimOptions {
        workers: 1,
        mailbox_requests_per_10_min: u32::MAX,
        ..SimOptions::default()
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start the simulator: {e}");
            std::process::exit(1)
        }
    };
    let url = sim.url();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(CONCURRENT)
        .build()
        .unwrap_or_default();
    let ctl = SimClient::with_http(url.clone(), http.clone());

    let accounts: Vec<Account> = rt.block_on(async {
        let mut req = BulkRequest::new(MAILBOXES, "bench");
        req.issue_refresh_tokens = true;
        let bulk = match ctl.bulk(&req).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("bulk provisioning failed: {e}");
                std::process::exit(1)
            }
        };
        let mut out = Vec::new();
        for e in bulk.entries {
            let t = match ctl.mint_tokens(&e.mailbox, &e.client_id, None).await {
                Ok(t) => t,
                Err(err) => {
                    eprintln!("minting tokens failed: {err}");
                    std::process::exit(1)
                }
            };
            out.push(Account {
                tenant: e.tenant_id,
                client_id: e.client_id,
                secret: e.client_secret,
                mailbox: e.mailbox,
                refresh_token: e.refresh_token.unwrap_or_default(),
                access_token: t.access_token,
            });
        }
        out
    });

    let mut group = c.benchmark_group("sim");
    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.measurement_time(Duration::from_secs(8));
    group.sample_size(30);

    let mut next = 0usize;
    group.bench_function("idle_mailbox_list", |b| {
        b.iter(|| {
            rt.block_on(async {
                let futs = (0..CONCURRENT).map(|i| {
                    let a = &accounts[(next + i) % accounts.len()];
                    http.get(format!(
                        "{url}/v1.0/users/{}/mailFolders/inbox/messages?$top=50",
                        a.mailbox
                    ))
                    .bearer_auth(&a.access_token)
                    .send()
                });
                for r in futures_util::future::join_all(futs).await {
                    match r {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                        }
                        Ok(r) => panic_free_exit(&format!("list answered {}", r.status())),
                        Err(e) => panic_free_exit(&format!("list failed: {e}")),
                    }
                }
            });
            next = next.wrapping_add(CONCURRENT);
        })
    });

    group.bench_function("token_refresh", |b| {
        b.iter(|| {
            rt.block_on(async {
                let futs = (0..CONCURRENT).map(|i| {
                    let a = &accounts[(next + i) % accounts.len()];
                    http.post(format!("{url}/{}/oauth2/v2.0/token", a.tenant))
                        .form(&[
                            ("client_id", a.client_id.as_str()),
                            ("client_secret", a.secret.as_str()),
                            ("grant_type", "refresh_token"),
                            ("refresh_token", a.refresh_token.as_str()),
                        ])
                        .send()
                });
                for r in futures_util::future::join_all(futs).await {
                    match r {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                        }
                        Ok(r) => panic_free_exit(&format!("refresh answered {}", r.status())),
                        Err(e) => panic_free_exit(&format!("refresh failed: {e}")),
                    }
                }
            });
            next = next.wrapping_add(CONCURRENT);
        })
    });
    group.finish();

    // Memory of 100,000 idle mailboxes (tenant + app + user + mailbox each), no entries returned.
    let before = rss_bytes();
    let started = std::time::Instant::now();
    rt.block_on(async {
        let mut req = BulkRequest::new(100_000, "mem");
        req.return_entries = false;
        if let Err(e) = ctl.bulk(&req).await {
            panic_free_exit(&format!("bulk 100k failed: {e}"));
        }
    });
    println!(
        "sim bulk: 100,000 tenants+apps+users+mailboxes provisioned in {:?}",
        started.elapsed()
    );
    if let (Some(b), Some(a)) = (before, rss_bytes()) {
        println!(
            "sim memory: 100,000 idle mailboxes (tenant+app+user+mailbox each) add {:.1} MiB = {} bytes per mailbox",
            (a.saturating_sub(b)) as f64 / 1048576.0,
            a.saturating_sub(b) / 100_000
        );
    }
    drop(accounts);
    sim.stop();
}

fn panic_free_exit(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(1)
}

criterion_group!(benches, bench);
criterion_main!(benches);
