//! The demo shop services over real HTTP, with the cart's outbound calls
//! pointed at a recording stub (the sidecar's outbound listener routes by
//! path, so one stub stands in for products and fulfillment).

use std::time::Duration;

use demo::shop::{serve, Service, DEFAULT_OUTBOUND};
use serde_json::Value;
use support::Stub;

type R = Result<(), Box<dyn std::error::Error>>;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build()
}

fn status_and_json(
    res: Result<ureq::Response, ureq::Error>,
) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.into()),
    };
    let status = resp.status();
    Ok((status, serde_json::from_str(&resp.into_string()?)?))
}

#[test]
fn cart_forwards_trace_context_to_both_calls() -> R {
    let sidecar = Stub::start_named("outbound", ":0")?;
    let cart = serve(Service::Cart, ":0", &format!("{}/", sidecar.url()))?;
    let (status, body) = status_and_json(
        agent()
            .post(&format!("{}/cart/add?cartId=c-42", cart.url()))
            .set("traceparent", TP)
            .set("tracestate", "vendor=a,other=b")
            .set("content-type", "application/json")
            .send_string(r#"{"productId":"p-2","qty":3}"#),
    )?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cartId"], "c-42");
    assert_eq!(body["items"][0]["productId"], "p-2");
    assert_eq!(body["items"][0]["qty"], 3);
    assert_eq!(body["items"][0]["product"]["path"], "/products/p-2");
    assert_eq!(body["shipping"]["path"], "/shipping-options");

    let reqs = sidecar.requests();
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, vec!["/products/p-2", "/shipping-options"]);
    for r in &reqs {
        assert_eq!(r.method, "GET");
        assert_eq!(r.header_values("traceparent"), vec![TP]);
        assert_eq!(r.header_values("tracestate"), vec!["vendor=a,other=b"]);
    }
    Ok(())
}

#[test]
fn cart_without_trace_context_sends_none_and_defaults_product() -> R {
    let sidecar = Stub::start(":0")?;
    let cart = serve(Service::Cart, ":0", &sidecar.url())?;
    let (status, body) = status_and_json(
        agent()
            .post(&format!("{}/cart/add?cartId=c-1", cart.url()))
            .call(),
    )?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["productId"], "p-1");
    let reqs = sidecar.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs
        .iter()
        .all(|r| r.header_values("traceparent").is_empty()
            && r.header_values("tracestate").is_empty()));
    Ok(())
}

#[test]
fn cart_errors() -> R {
    let sidecar = Stub::start(":0")?;
    let cart = serve(Service::Cart, ":0", &sidecar.url())?;
    let url = |q: &str| format!("{}/cart/add{q}", cart.url());
    assert_eq!(
        status_and_json(agent().post(&url("")).call())?.0,
        400,
        "missing cartId"
    );
    assert_eq!(
        status_and_json(agent().post(&url("?cartId=c")).send_string("{bad"))?.0,
        400
    );
    assert_eq!(
        status_and_json(
            agent()
                .post(&url("?cartId=c"))
                .send_string(r#"{"productId":"../x"}"#)
        )?
        .0,
        400
    );
    assert_eq!(
        status_and_json(agent().get(&url("?cartId=c")).call())?.0,
        405
    );
    assert!(sidecar.requests().is_empty());

    // Downstream failure -> 502 (products service unreachable: nothing listens there).
    let dead = {
        let s = Stub::start(":0")?;
        s.url()
    };
    let cart2 = serve(Service::Cart, ":0", &dead)?;
    let (status, body) = status_and_json(
        agent()
            .post(&format!("{}/cart/add?cartId=c", cart2.url()))
            .call(),
    )?;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "products call failed");
    Ok(())
}

#[test]
fn each_service_answers_its_routes() -> R {
    let products = serve(Service::Products, ":0", DEFAULT_OUTBOUND)?;
    let (s, list) = status_and_json(agent().get(&format!("{}/products", products.url())).call())?;
    assert_eq!((s, list.as_array().map(Vec::len)), (200, Some(3)));
    let (s, one) = status_and_json(
        agent()
            .get(&format!("{}/products/p-3", products.url()))
            .call(),
    )?;
    assert_eq!((s, one["id"].as_str()), (200, Some("p-3")));
    assert_eq!(
        status_and_json(
            agent()
                .get(&format!("{}/products/p-404", products.url()))
                .call()
        )?
        .0,
        404
    );

    let auth = serve(Service::Auth, ":0", DEFAULT_OUTBOUND)?;
    let (s, login) = status_and_json(
        agent()
            .post(&format!("{}/auth/login", auth.url()))
            .send_string("{}"),
    )?;
    assert_eq!(
        (s, login["token"].as_str(), login["user"].as_str()),
        (200, Some("demo-token"), Some("demo"))
    );

    let orders = serve(Service::Orders, ":0", DEFAULT_OUTBOUND)?;
    let (s, order) = status_and_json(
        agent()
            .post(&format!("{}/orders", orders.url()))
            .send_string(r#"{"items":[]}"#),
    )?;
    assert_eq!((s, order["orderId"].as_str()), (201, Some("o-1001")));

    let fulfillment = serve(Service::Fulfillment, ":0", DEFAULT_OUTBOUND)?;
    let (s, opts) = status_and_json(
        agent()
            .get(&format!("{}/shipping-options", fulfillment.url()))
            .call(),
    )?;
    assert_eq!(s, 200);
    assert!(opts.as_array().is_some_and(|a| !a.is_empty()));

    for svc in [&products, &auth, &orders, &fulfillment] {
        let resp = agent().get(&format!("{}/healthz", svc.url())).call()?;
        assert_eq!(resp.header("x-service"), Some(svc.service().name()));
    }
    assert_eq!(
        status_and_json(agent().get(&format!("{}/nope", auth.url())).call())?.0,
        404
    );
    Ok(())
}
