//! `shop`: runs the demo e-commerce services.
//!
//! Usage:
//!   `shop <auth|products|cart|orders|fulfillment> [--listen ADDR] [--outbound URL]`
//!   `shop all [--outbound URL]` (auth 18081, products 18082, cart 18083,
//!   orders 18084, fulfillment 18085 on 127.0.0.1)
//!
//! Runs until killed.

use std::io::Write;
use std::process::ExitCode;
use std::str::FromStr;

use demo::shop::{serve, Service, ServiceHandle, DEFAULT_OUTBOUND};

const USAGE: &str =
    "usage: shop <auth|products|cart|orders|fulfillment|all> [--listen ADDR] [--outbound URL]";

fn run() -> Result<Vec<ServiceHandle>, String> {
    let mut args = std::env::args().skip(1);
    let which = args.next().ok_or_else(|| USAGE.to_string())?;
    if which == "-h" || which == "--help" {
        return Err(USAGE.into());
    }
    let mut listen: Option<String> = None;
    let mut outbound = DEFAULT_OUTBOUND.to_string();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value),
            "--outbound" => outbound = value,
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let services: Vec<Service> = if which == "all" {
        if listen.is_some() {
            return Err("--listen cannot be used with `all`".into());
        }
        Service::ALL.to_vec()
    } else {
        vec![Service::from_str(&which)?]
    };
    let mut handles = Vec::new();
    for svc in services {
        let addr = listen
            .clone()
            .unwrap_or_else(|| svc.default_listen().to_string());
        let h = serve(svc, &addr, &outbound)
            .map_err(|e| format!("{svc}: cannot listen on {addr}: {e}"))?;
        if svc == Service::Cart {
            println!("started {svc} on {} (outbound {outbound})", h.url());
        } else {
            println!("started {svc} on {}", h.url());
        }
        handles.push(h);
    }
    let _ = std::io::stdout().flush();
    Ok(handles)
}

fn main() -> ExitCode {
    match run() {
        Ok(_handles) => loop {
            std::thread::park();
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
