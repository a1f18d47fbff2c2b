//! Tests of the recording stub upstream over real HTTP.

use std::time::Duration;

use support::Stub;

type R = Result<(), Box<dyn std::error::Error>>;

#[test]
fn records_requests_and_honours_status() -> R {
    let stub = Stub::start_named("products", ":0")?;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();

    let resp = agent
        .get(&format!("{}/products/p-1?x=1", stub.url()))
        .set(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .set("X-Dup", "one")
        .set("x-dup", "two")
        .call()?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_str(&resp.into_string()?)?;
    assert_eq!(
        body,
        serde_json::json!({"stub": "products", "path": "/products/p-1?x=1"})
    );

    match agent
        .post(&format!("{}/fail", stub.url()))
        .set("x-stub-status", "503")
        .send_string("payload")
    {
        Err(ureq::Error::Status(503, _)) => {}
        other => return Err(format!("expected 503, got {other:?}").into()),
    }

    let reqs = stub.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/products/p-1?x=1");
    assert_eq!(reqs[0].header_values("x-dup"), vec!["one", "two"]);
    assert_eq!(
        reqs[0].header_values("TRACEPARENT"),
        vec!["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]
    );
    assert!(reqs[0]
        .headers
        .iter()
        .all(|(k, _)| *k == k.to_ascii_lowercase()));
    assert_eq!(reqs[1].method, "POST");
    assert_eq!(reqs[1].body, "payload");
    stub.clear();
    assert!(stub.requests().is_empty());
    Ok(())
}

#[test]
fn unnamed_stub_reports_its_address() -> R {
    let stub = Stub::start("127.0.0.1:0")?;
    assert_eq!(stub.name(), stub.addr().to_string());
    let body = ureq::get(&format!("{}/", stub.url()))
        .call()?
        .into_string()?;
    assert!(body.contains(&stub.addr().to_string()), "{body}");
    Ok(())
}

#[test]
fn fixed_port_can_be_reused_after_drop() -> R {
    let first = Stub::start(":0")?;
    let addr = first.addr().to_string();
    drop(first);
    let again = Stub::start(&addr)?;
    assert_eq!(again.addr().to_string(), addr);
    Ok(())
}
