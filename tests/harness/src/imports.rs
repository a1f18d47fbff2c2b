//! Every import the module makes, the proxy-wasm ABI 0.2.1 calls and the WASI ones, answered
//! from the scripted [`Host`]: buffers handed over through the module's own
//! `proxy_on_memory_allocate`, as Envoy does; a scripted failure answers its status instead.

use crate::host::{
    deserialize_map, serialize_map, status, HeaderWrite, Host, HttpCall, Metric, WriteOp,
};
use wasmi::{Caller, Extern, Linker, Memory};

type Ctx<'a> = Caller<'a, Host>;
type HostResult<T> = Result<T, wasmi::Error>;

fn memory(c: &Ctx<'_>) -> HostResult<Memory> {
    c.get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| wasmi::Error::new("module exports no memory"))
}

fn read(c: &Ctx<'_>, ptr: u32, len: u32) -> HostResult<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    memory(c)?
        .read(c, ptr as usize, &mut buf)
        .map_err(|e| wasmi::Error::new(format!("guest memory read: {e}")))?;
    Ok(buf)
}

fn write(c: &mut Ctx<'_>, ptr: u32, bytes: &[u8]) -> HostResult<()> {
    let m = memory(c)?;
    m.write(c, ptr as usize, bytes)
        .map_err(|e| wasmi::Error::new(format!("guest memory write: {e}")))
}

fn write_u32(c: &mut Ctx<'_>, ptr: u32, v: u32) -> HostResult<()> {
    write(c, ptr, &v.to_le_bytes())
}

/// Hands `bytes` to the module the way Envoy does: a buffer from its
/// `proxy_on_memory_allocate`, its address and size written to the two out-pointers.
fn hand_over(c: &mut Ctx<'_>, bytes: &[u8], data_out: u32, size_out: u32) -> HostResult<u32> {
    let alloc = c
        .get_export("proxy_on_memory_allocate")
        .and_then(Extern::into_func)
        .ok_or_else(|| wasmi::Error::new("no proxy_on_memory_allocate"))?;
    let alloc = alloc.typed::<u32, u32>(&*c)?;
    let ptr = alloc.call(&mut *c, bytes.len() as u32)?;
    if ptr == 0 && !bytes.is_empty() {
        return Ok(status::INTERNAL_FAILURE);
    }
    write(c, ptr, bytes)?;
    write_u32(c, data_out, ptr)?;
    write_u32(c, size_out, bytes.len() as u32)?;
    Ok(status::OK)
}

fn lower(b: &[u8]) -> Vec<u8> {
    b.to_ascii_lowercase()
}

/// Defines every import the filter (old builds included) makes.
pub(crate) fn define_imports(linker: &mut Linker<Host>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |c: Ctx<'_>, level: u32, ptr: u32, len: u32| -> HostResult<u32> {
            let msg = read(&c, ptr, len)?;
            let mut c = c;
            if let Some(s) = c.data_mut().fault("proxy_log") {
                return Ok(s);
            }
            let line = String::from_utf8_lossy(&msg).into_owned();
            c.data_mut().logs.push((level, line));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: Ctx<'_>, out: u32| -> HostResult<u32> {
            if let Some(s) = c.data_mut().fault("proxy_get_log_level") {
                return Ok(s);
            }
            let level = c.data().log_level;
            write_u32(&mut c, out, level)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Ctx<'_>, out: u32| -> HostResult<u32> {
            if let Some(s) = c.data_mut().fault("proxy_get_current_time_nanoseconds") {
                return Ok(s);
            }
            let t = c.data().now_ns;
            write(&mut c, out, &t.to_le_bytes())?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Ctx<'_>, ms: u32| -> HostResult<u32> {
            if let Some(s) = c.data_mut().fault("proxy_set_tick_period_milliseconds") {
                return Ok(s);
            }
            c.data_mut().tick_period_ms = Some(ms);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Ctx<'_>,
         kind: u32,
         start: u32,
         max: u32,
         data: u32,
         size: u32|
         -> HostResult<u32> {
            if let Some(s) = c.data_mut().fault("proxy_get_buffer_bytes") {
                return Ok(s);
            }
            let buf = match kind {
                4 => c.data().call_response_body.clone(),
                7 => c.data().plugin_config.clone(),
                _ => return Ok(status::NOT_FOUND),
            };
            let from = (start as usize).min(buf.len());
            let to = from.saturating_add(max as usize).min(buf.len());
            let slice = buf.get(from..to).unwrap_or_default().to_vec();
            hand_over(&mut c, &slice, data, size)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Ctx<'_>, map: u32, data: u32, size: u32| -> HostResult<u32> {
            if let Some(s) = c.data_mut().fault("proxy_get_header_map_pairs") {
                return Ok(s);
            }
            let Some(pairs) = c.data_mut().map(map).cloned() else {
                return Ok(status::BAD_ARGUMENT);
            };
            hand_over(&mut c, &serialize_map(&pairs), data, size)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Ctx<'_>, map: u32, kp: u32, kl: u32, data: u32, size: u32| -> HostResult<u32> {
            let key = lower(&read(&c, kp, kl)?);
            if let Some(s) = c.data_mut().fault("proxy_get_header_map_value") {
                return Ok(s);
            }
            let Some(pairs) = c.data_mut().map(map) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let value = pairs
                .iter()
                .find(|(k, _)| lower(k) == key)
                .map(|(_, v)| v.clone());
            match value {
                Some(v) => hand_over(&mut c, &v, data, size),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    for (name, op) in [
        ("proxy_replace_header_map_value", WriteOp::Replace),
        ("proxy_add_header_map_value", WriteOp::Add),
    ] {
        linker.func_wrap(
            "env",
            name,
            move |mut c: Ctx<'_>,
                  map: u32,
                  kp: u32,
                  kl: u32,
                  vp: u32,
                  vl: u32|
                  -> HostResult<u32> {
                let (key, value) = (read(&c, kp, kl)?, read(&c, vp, vl)?);
                let import = if op == WriteOp::Add {
                    "proxy_add_header_map_value"
                } else {
                    "proxy_replace_header_map_value"
                };
                if let Some(s) = c.data_mut().fault(import) {
                    return Ok(s);
                }
                let context = c.data().current;
                let h = c.data_mut();
                h.writes.push(HeaderWrite {
                    context,
                    map,
                    op,
                    name: key.clone(),
                    value: value.clone(),
                });
                let Some(pairs) = h.map(map) else {
                    return Ok(status::BAD_ARGUMENT);
                };
                if op == WriteOp::Replace {
                    pairs.retain(|(k, _)| lower(k) != lower(&key));
                }
                pairs.push((key, value));
                Ok(status::OK)
            },
        )?;
    }
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Ctx<'_>, map: u32, kp: u32, kl: u32| -> HostResult<u32> {
            let key = read(&c, kp, kl)?;
            if let Some(s) = c.data_mut().fault("proxy_remove_header_map_value") {
                return Ok(s);
            }
            let context = c.data().current;
            let h = c.data_mut();
            h.writes.push(HeaderWrite {
                context,
                map,
                op: WriteOp::Remove,
                name: key.clone(),
                value: Vec::new(),
            });
            let Some(pairs) = h.map(map) else {
                return Ok(status::BAD_ARGUMENT);
            };
            pairs.retain(|(k, _)| lower(k) != lower(&key));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Ctx<'_>, pp: u32, pl: u32, data: u32, size: u32| -> HostResult<u32> {
            let path = read(&c, pp, pl)?;
            if let Some(s) = c.data_mut().fault("proxy_get_property") {
                return Ok(s);
            }
            let segs: Vec<&[u8]> = path.split(|b| *b == 0).collect();
            let value = if let [b"request", b"headers", name] = segs.as_slice() {
                let name = lower(name);
                let vals: Vec<Vec<u8>> = c
                    .data_mut()
                    .stream()
                    .request
                    .iter()
                    .filter(|(k, _)| lower(k) == name)
                    .map(|(_, v)| v.clone())
                    .collect();
                (!vals.is_empty()).then(|| vals.join(&b","[..]))
            } else {
                let key = segs
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<Vec<_>>()
                    .join(".");
                c.data().properties.get(&key).cloned()
            };
            match value {
                Some(v) => hand_over(&mut c, &v, data, size),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Ctx<'_>, pp: u32, pl: u32, vp: u32, vl: u32| -> HostResult<u32> {
            let (path, value) = (read(&c, pp, pl)?, read(&c, vp, vl)?);
            if let Some(s) = c.data_mut().fault("proxy_set_property") {
                return Ok(s);
            }
            let path = String::from_utf8_lossy(&path).replace('\0', ".");
            c.data_mut().filter_state.push((path, value));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Ctx<'_>,
         up: u32,
         ul: u32,
         hp: u32,
         hl: u32,
         bp: u32,
         bl: u32,
         tp: u32,
         tl: u32,
         timeout_ms: u32,
         token_out: u32|
         -> HostResult<u32> {
            let cluster = read(&c, up, ul)?;
            let headers = read(&c, hp, hl)?;
            let body = read(&c, bp, bl)?;
            let _trailers = read(&c, tp, tl)?;
            if let Some(s) = c.data_mut().fault("proxy_http_call") {
                return Ok(s);
            }
            let Some(headers) = deserialize_map(&headers) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let h = c.data_mut();
            h.next_token += 1;
            let token = h.next_token;
            let context = h.current;
            h.calls.push(HttpCall {
                token,
                context,
                cluster: String::from_utf8_lossy(&cluster).into_owned(),
                headers,
                body,
                timeout_ms,
            });
            write_u32(&mut c, token_out, token)?;
            if let Some(answer) = c.data_mut().answer_inline.take() {
                c.data_mut().call_response_headers = vec![(b":status".to_vec(), answer.clone())];
                c.data_mut().call_response_body.clear();
                let respond = c
                    .get_export("proxy_on_http_call_response")
                    .and_then(Extern::into_func)
                    .ok_or_else(|| wasmi::Error::new("no proxy_on_http_call_response"))?;
                respond
                    .typed::<(u32, u32, u32, u32, u32), ()>(&c)?
                    .call(&mut c, (context, token, 1, 0, 0))?;
                c.data_mut().answer_inline = Some(answer);
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Ctx<'_>, kind: u32, np: u32, nl: u32, out: u32| -> HostResult<u32> {
            let name = String::from_utf8_lossy(&read(&c, np, nl)?).into_owned();
            if let Some(s) = c.data_mut().fault("proxy_define_metric") {
                return Ok(s);
            }
            let h = c.data_mut();
            let id = match h.metrics.iter().position(|m| m.name == name) {
                Some(i) => i,
                None => {
                    h.metrics.push(Metric {
                        kind,
                        name,
                        value: 0,
                        recorded: Vec::new(),
                    });
                    h.metrics.len() - 1
                }
            };
            write_u32(&mut c, out, id as u32)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: Ctx<'_>, id: u32, offset: i64| -> HostResult<u32> {
            if let Some(s) = c.data_mut().fault("proxy_increment_metric") {
                return Ok(s);
            }
            match c.data_mut().metrics.get_mut(id as usize) {
                Some(m) => {
                    m.value = m.value.saturating_add(offset);
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: Ctx<'_>, id: u32, value: u64| -> HostResult<u32> {
            if let Some(s) = c.data_mut().fault("proxy_record_metric") {
                return Ok(s);
            }
            match c.data_mut().metrics.get_mut(id as usize) {
                Some(m) => {
                    m.recorded.push(value);
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap("env", "proxy_done", |mut c: Ctx<'_>| -> HostResult<u32> {
        if let Some(s) = c.data_mut().fault("proxy_done") {
            return Ok(s);
        }
        c.data_mut().done_calls += 1;
        Ok(status::OK)
    })?;
    // Builds on the SDK's dispatcher call this before a callout answer.
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Ctx<'_>, _id: u32| -> HostResult<u32> {
            Ok(c.data_mut()
                .fault("proxy_set_effective_context")
                .unwrap_or(status::OK))
        },
    )?;
    // WASI: randomness (deterministic here), environment, stdio, exit.
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "random_get",
        |mut c: Ctx<'_>, ptr: u32, len: u32| -> HostResult<u32> {
            let bytes: Vec<u8> = (0..len).map(|_| c.data_mut().next_random() as u8).collect();
            write(&mut c, ptr, &bytes)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "environ_sizes_get",
        |mut c: Ctx<'_>, count_out: u32, size_out: u32| -> HostResult<u32> {
            let env = c.data().env.clone();
            let size: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
            write_u32(&mut c, count_out, env.len() as u32)?;
            write_u32(&mut c, size_out, size as u32)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "environ_get",
        |mut c: Ctx<'_>, ptrs: u32, buf: u32| -> HostResult<u32> {
            let env = c.data().env.clone();
            let mut at = buf;
            for (i, (k, v)) in env.iter().enumerate() {
                write_u32(&mut c, ptrs + 4 * i as u32, at)?;
                let entry = format!("{k}={v}\0");
                write(&mut c, at, entry.as_bytes())?;
                at += entry.len() as u32;
            }
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "fd_write",
        |mut c: Ctx<'_>, _fd: u32, iovs: u32, n: u32, written_out: u32| -> HostResult<u32> {
            let mut total = 0u32;
            for i in 0..n {
                let iov = read(&c, iovs + 8 * i, 8)?;
                let word = |at: usize| -> HostResult<u32> {
                    let b: [u8; 4] = iov
                        .get(at..at + 4)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| wasmi::Error::new("short iovec"))?;
                    Ok(u32::from_le_bytes(b))
                };
                let (ptr, len) = (word(0)?, word(4)?);
                let bytes = read(&c, ptr, len)?;
                c.data_mut().stdio.extend_from_slice(&bytes);
                total += len;
            }
            write_u32(&mut c, written_out, total)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "proc_exit",
        |_c: Ctx<'_>, code: i32| -> HostResult<()> { Err(wasmi::Error::i32_exit(code)) },
    )?;
    Ok(())
}
