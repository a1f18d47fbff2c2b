//! Span names and attributes: templates, unknown methods, Durable Objects, value types.

use super::*;

#[test]
fn span_naming_rows() {
    let gateway = config(GATEWAY);
    let do_param = config(DO_ROUTE_PARAM);
    let do_header = config(DO_HEADER);
    struct Row<'a> {
        cfg: &'a Config,
        method: &'static str,
        path: &'static str,
        cluster: &'static str,
        /// One more request header.
        header: Option<(&'static str, &'static str)>,
        /// The upstream `:path` after a rewrite.
        upstream_path: Option<&'static str>,
        server_name: &'static str,
        client_name: &'static str,
        reason: &'static str,
    }
    #[rustfmt::skip]
    let rows: [Row; 12] = [
        Row { cfg: &gateway, method: "GET", path: "/healthz", cluster: "auth", header: None, upstream_path: None,
              server_name: "GET", client_name: "AUTH_SERVICE GET",
              reason: "unmatched path" },
        Row { cfg: &gateway, method: "GET", path: "/api/products/p-1?ref=home", cluster: "products", header: None, upstream_path: None,
              server_name: "GET /api/products/:id", client_name: "PRODUCTS_SERVICE GET /api/products/:id",
              reason: "query ignored; no rewrite: route's own template" },
        Row { cfg: &gateway, method: "FOO", path: "/healthz", cluster: "auth", header: None, upstream_path: None,
              server_name: "HTTP", client_name: "AUTH_SERVICE HTTP",
              reason: "unknown method" },
        Row { cfg: &gateway, method: "FOO", path: "/api/products/p-1", cluster: "products", header: None, upstream_path: None,
              server_name: "HTTP /api/products/:id", client_name: "PRODUCTS_SERVICE HTTP /api/products/:id",
              reason: "unknown method, matched route" },
        Row { cfg: &gateway, method: "get", path: "/healthz", cluster: "auth", header: None, upstream_path: None,
              server_name: "HTTP", client_name: "AUTH_SERVICE HTTP",
              reason: "methods are case-sensitive" },
        Row { cfg: &gateway, method: "GET", path: "/healthz", cluster: "inventory", header: None, upstream_path: None,
              server_name: "GET", client_name: "inventory GET",
              reason: "unmapped cluster is named after itself" },
        Row { cfg: &do_param, method: "POST", path: "/api/cart/c-42/add", cluster: "cart", header: None, upstream_path: None,
              server_name: "POST /api/cart/:cartId/add", client_name: "CartDurableObject POST /cart/add",
              reason: "Durable Object, id from route param" },
        Row { cfg: &do_header, method: "POST", path: "/api/cart/c-42/add", cluster: "cart", header: Some(("x-cart-id", "c-99")), upstream_path: None,
              server_name: "POST /api/cart/:cartId/add", client_name: "CartDurableObject POST /cart/add",
              reason: "Durable Object, id from header" },
        Row { cfg: &gateway, method: "GET", path: "/api/products/p-1", cluster: "products", header: None, upstream_path: Some("/products/p-1?x=1"),
              server_name: "GET /api/products/:id", client_name: "PRODUCTS_SERVICE GET /products/:id",
              reason: "upstream template from the rewritten :path" },
        Row { cfg: &gateway, method: "GET", path: "/api/products/p-1", cluster: "products", header: None, upstream_path: Some("/internal/p-1"),
              server_name: "GET /api/products/:id", client_name: "PRODUCTS_SERVICE GET",
              reason: "rewritten path matches no template: none (the downstream one would misname what the upstream got)" },
        Row { cfg: &gateway, method: "POST", path: "/api/cart/c-42/add", cluster: "cart", header: None, upstream_path: Some("/products/p-1"),
              server_name: "POST /api/cart/:cartId/add", client_name: "CART_SERVICE POST /cart/:cartId/add",
              reason: "configured upstream_template wins over the rewritten path" },
        Row { cfg: &gateway, method: "GET", path: "/healthz", cluster: "auth", header: None, upstream_path: Some("/products/p-1"),
              server_name: "GET", client_name: "AUTH_SERVICE GET /products/:id",
              reason: "unmatched downstream, rewritten path matches" },
    ];
    for Row {
        cfg,
        method,
        path,
        cluster,
        header,
        upstream_path,
        server_name: want_server,
        client_name: want_client,
        reason,
    } in rows
    {
        let mut host = request(method, path, Some(cluster));
        if let Some((k, v)) = header {
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
    struct Row {
        json: &'static str,
        path: &'static str,
        header: Option<(&'static str, &'static str)>,
        want_id: Option<&'static str>,
        reason: &'static str,
    }
    #[rustfmt::skip]
    let rows = [
        Row { json: DO_ROUTE_PARAM, path: "/api/cart/c-42/add", header: None, want_id: Some("c-42"), reason: "route param" },
        Row { json: DO_ROUTE_PARAM, path: "/cart/c-42", header: None, want_id: None, reason: "route not matched: no id" },
        Row { json: DO_HEADER, path: "/api/cart/c-42/add", header: Some(("x-cart-id", "c-99")), want_id: Some("c-99"), reason: "header" },
        Row { json: DO_HEADER, path: "/api/cart/c-42/add", header: Some(("X-Cart-Id", "c-77")), want_id: Some("c-77"), reason: "header name case-insensitive" },
        Row { json: DO_HEADER, path: "/api/cart/c-42/add", header: None, want_id: None, reason: "header absent: no id" },
    ];
    for Row {
        json,
        path,
        header,
        want_id,
        reason,
    } in rows
    {
        let mut host = request("POST", path, Some("cart"));
        if let Some((k, v)) = header {
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
