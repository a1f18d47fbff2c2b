//! Span names and attributes: templates, unknown methods, Durable Objects, value types.

use super::*;

#[test]
fn span_naming_rows() {
    let gateway = config(GATEWAY);
    let do_param = config(DO_ROUTE_PARAM);
    let do_header = config(DO_HEADER);
    // (config, method, path, cluster, extra header, rewritten upstream :path,
    //  server name, client name, reason)
    type Row<'a> = (
        &'a Config,
        &'a str,
        &'a str,
        &'a str,
        Option<(&'a str, &'a str)>,
        Option<&'a str>,
        &'a str,
        &'a str,
        &'a str,
    );
    let rows: [Row; 12] = [
        (
            &gateway,
            "GET",
            "/healthz",
            "auth",
            None,
            None,
            "GET",
            "AUTH_SERVICE GET",
            "unmatched path",
        ),
        (
            &gateway,
            "GET",
            "/api/products/p-1?ref=home",
            "products",
            None,
            None,
            "GET /api/products/:id",
            "PRODUCTS_SERVICE GET /api/products/:id",
            "query ignored; no rewrite: route's own template",
        ),
        (
            &gateway,
            "FOO",
            "/healthz",
            "auth",
            None,
            None,
            "HTTP",
            "AUTH_SERVICE HTTP",
            "unknown method",
        ),
        (
            &gateway,
            "FOO",
            "/api/products/p-1",
            "products",
            None,
            None,
            "HTTP /api/products/:id",
            "PRODUCTS_SERVICE HTTP /api/products/:id",
            "unknown method, matched route",
        ),
        (
            &gateway,
            "get",
            "/healthz",
            "auth",
            None,
            None,
            "HTTP",
            "AUTH_SERVICE HTTP",
            "methods are case-sensitive",
        ),
        (
            &gateway,
            "GET",
            "/healthz",
            "inventory",
            None,
            None,
            "GET",
            "inventory GET",
            "unmapped cluster is named after itself",
        ),
        (
            &do_param,
            "POST",
            "/api/cart/c-42/add",
            "cart",
            None,
            None,
            "POST /api/cart/:cartId/add",
            "CartDurableObject POST /cart/add",
            "Durable Object, id from route param",
        ),
        (
            &do_header,
            "POST",
            "/api/cart/c-42/add",
            "cart",
            Some(("x-cart-id", "c-99")),
            None,
            "POST /api/cart/:cartId/add",
            "CartDurableObject POST /cart/add",
            "Durable Object, id from header",
        ),
        (
            &gateway,
            "GET",
            "/api/products/p-1",
            "products",
            None,
            Some("/products/p-1?x=1"),
            "GET /api/products/:id",
            "PRODUCTS_SERVICE GET /products/:id",
            "upstream template from the rewritten :path",
        ),
        (
            &gateway,
            "GET",
            "/api/products/p-1",
            "products",
            None,
            Some("/internal/p-1"),
            "GET /api/products/:id",
            "PRODUCTS_SERVICE GET /api/products/:id",
            "rewritten path matches no route: route's own",
        ),
        (
            &gateway,
            "POST",
            "/api/cart/c-42/add",
            "cart",
            None,
            Some("/products/p-1"),
            "POST /api/cart/:cartId/add",
            "CART_SERVICE POST /cart/:cartId/add",
            "configured upstream_template wins over the rewritten path",
        ),
        (
            &gateway,
            "GET",
            "/healthz",
            "auth",
            None,
            Some("/products/p-1"),
            "GET",
            "AUTH_SERVICE GET /products/:id",
            "unmatched downstream, rewritten path matches",
        ),
    ];
    for (cfg, method, path, cluster, extra, upstream_path, want_server, want_client, reason) in rows
    {
        let mut host = request(method, path, Some(cluster));
        if let Some((k, v)) = extra {
            host = host.header(k, v);
        }
        let done = Completion {
            upstream_path: upstream_path.map(str::to_string),
            ..answered(200)
        };
        let r = run(cfg, host, &done);
        assert_eq!(r.server_span().name, want_server, "{reason}");
        assert_eq!(r.client_span().name, want_client, "{reason}");
        match cfg.routes.find(strip_query(path)) {
            Some(_) => assert!(attr(r.server_span(), sc::HTTP_ROUTE).is_some(), "{reason}"),
            None => assert_eq!(attr(r.server_span(), sc::HTTP_ROUTE), None, "{reason}"),
        }
    }
}

#[test]
fn unknown_method_is_other_with_the_original_kept() {
    let r = run(
        &config(GATEWAY),
        request("FOO", "/healthz", Some("auth")),
        &answered(200),
    );
    for s in [r.server_span(), r.client_span()] {
        assert_eq!(attr_str(s, sc::HTTP_REQUEST_METHOD), "_OTHER", "{}", s.name);
        assert_eq!(
            attr_str(s, sc::HTTP_REQUEST_METHOD_ORIGINAL),
            "FOO",
            "{}",
            s.name
        );
        assert_eq!(attr_str(s, sc::LEGACY_HTTP_METHOD), "FOO", "{}", s.name);
    }
    let r = run(
        &config(GATEWAY),
        request("GET", "/healthz", Some("auth")),
        &answered(200),
    );
    assert_eq!(attr_str(r.server_span(), sc::HTTP_REQUEST_METHOD), "GET");
    assert_eq!(
        attr(r.server_span(), sc::HTTP_REQUEST_METHOD_ORIGINAL),
        None
    );
}

#[test]
fn durable_object_attributes() {
    // (config, path, header, want id, reason)
    for (json, path, extra, want_id, reason) in [
        (
            DO_ROUTE_PARAM,
            "/api/cart/c-42/add",
            None,
            Some("c-42"),
            "route param",
        ),
        (
            DO_ROUTE_PARAM,
            "/cart/c-42",
            None,
            None,
            "route not matched: no id",
        ),
        (
            DO_HEADER,
            "/api/cart/c-42/add",
            Some(("x-cart-id", "c-99")),
            Some("c-99"),
            "header",
        ),
        (
            DO_HEADER,
            "/api/cart/c-42/add",
            Some(("X-Cart-Id", "c-77")),
            Some("c-77"),
            "header name case-insensitive",
        ),
        (
            DO_HEADER,
            "/api/cart/c-42/add",
            None,
            None,
            "header absent: no id",
        ),
    ] {
        let mut host = request("POST", path, Some("cart"));
        if let Some((k, v)) = extra {
            host = host.header(k, v);
        }
        let r = run(&config(json), host, &answered(200));
        let client = r.client_span();
        assert_eq!(
            attr_str(client, sc::DURABLE_OBJECT_NAME),
            "CartDurableObject",
            "{reason}"
        );
        assert_eq!(
            attr(client, sc::DURABLE_OBJECT_ID),
            want_id.map(Val::str),
            "{reason}"
        );
        assert_eq!(
            attr_str(client, sc::SERVICE_NAME),
            "cart",
            "{reason}: service defaults to the cluster"
        );
        assert_eq!(
            attr_in(
                &event(client, sc::EVENT_CALL_START).attributes,
                sc::SERVICE_PEER_NAME
            ),
            Some(Val::str("cart")),
            "{reason}: the event names the same service.peer.name as the span"
        );
        assert_eq!(
            attr(r.server_span(), sc::DURABLE_OBJECT_NAME),
            None,
            "{reason}: only on CLIENT"
        );
    }
}

#[test]
fn numeric_attributes_are_ints() {
    let host = MockHost::new()
        .header(":method", "GET")
        .header(":path", "/api/products/p-1")
        .header(":scheme", "https")
        .header(":authority", "shop.example:8443")
        .property(&["xds", "cluster_name"], b"products")
        .now(START)
        .random(RANDOM);
    // The peer address and protocol are log-phase reads (only for recorded requests).
    let done = Completion {
        client_address: Some("192.0.2.10:51234".into()),
        protocol: Some("HTTP/1.1".into()),
        ..answered(201)
    };
    let r = run(&config(GATEWAY), host, &done);
    let (server, client) = (r.server_span(), r.client_span());
    for s in [server, client] {
        assert_eq!(
            attr(s, sc::HTTP_RESPONSE_STATUS_CODE),
            Some(Val::Int(201)),
            "{}",
            s.name
        );
        assert_eq!(
            attr(s, sc::LEGACY_HTTP_STATUS_CODE),
            Some(Val::Int(201)),
            "{}",
            s.name
        );
    }
    assert_eq!(attr(server, sc::SERVER_PORT), Some(Val::Int(8443)));
    assert_eq!(
        attr(server, sc::SERVER_ADDRESS),
        Some(Val::str("shop.example"))
    );
    assert_eq!(
        attr(server, sc::CLIENT_ADDRESS),
        Some(Val::str("192.0.2.10"))
    );
    assert_eq!(
        attr(server, sc::NETWORK_PROTOCOL_VERSION),
        Some(Val::str("1.1"))
    );
    assert_eq!(attr(client, sc::SERVER_PORT), Some(Val::Int(8080)));
    assert_eq!(attr(client, sc::NETWORK_PEER_PORT), Some(Val::Int(8080)));
    assert_eq!(
        attr(client, sc::NETWORK_PEER_ADDRESS),
        Some(Val::str("10.0.0.7"))
    );

    // No port in :authority: the scheme's default, still an int.
    let r = run(
        &config(GATEWAY),
        request("GET", "/api/products/p-1", Some("products")),
        &answered(200),
    );
    assert_eq!(attr(r.server_span(), sc::SERVER_PORT), Some(Val::Int(443)));
}
