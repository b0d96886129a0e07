use std::time::Duration;
use inboxd::sim::client::Delivery;
use serde_json::json;
use crate::helpers::world;

#[actix_rt::test]
async fn scratch_policy() {
    let world = world(1, &[]).await;
    let old = (chrono::Utc::now() - chrono::Duration::days(3)).to_rfc3339();
    let recent = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let mut expected = Vec::new();
    for (policy, wanted) in [("all", 3usize), ("last_days:2", 2), ("new", 1)] {
        let upn = format!("{}@policy.example", policy.replace(':', "-"));
        let mailbox = world.mailbox(&upn).await;
        let delivery = Delivery {
            messages: vec![
                json!({"subject": "old", "received_date_time": old}),
                json!({"subject": "recent", "received_date_time": recent}),
            ],
            ..Delivery::default()
        };
        world.sim_client.deliver(&upn, &delivery).await.unwrap();
        let (status, channel) = world
            .daemon
            .api(
                reqwest::Method::POST,
                "/api/channels",
                Some(json!({"tenant_id": mailbox.tenant, "client_id": mailbox.client_id, "client_secret": mailbox.secret, "mailbox": upn, "first_import": policy})),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{channel}");
        let id = channel["id"].as_str().unwrap().to_owned();
        assert_eq!(world.daemon.authorize(&id).await.unwrap().0, 200);
        world
            .sim_client
            .deliver(
                &upn,
                &Delivery {
                    messages: vec![json!({"subject": "after"})],
                    ..Delivery::default()
                },
            )
            .await
            .unwrap();
        expected.push((id, wanted));
    }
    actix_rt::time::sleep(Duration::from_secs(4)).await;
    let lines = world.daemon.sink_lines().unwrap();
    for (id, wanted) in expected {
        let got: Vec<_> = lines.iter().filter(|l| l["channel_id"] == id.as_str()).map(|l| l["subject"].to_string()).collect();
        eprintln!("{id} wanted {wanted} got {got:?}");
        eprintln!("{}", world.daemon.channel(&id).await.unwrap());
    }
}
