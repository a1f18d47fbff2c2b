//! `${VAR}`, `${VAR:-default}` and `$$` expansion from the environment Envoy gives the VM
//! (`vm_config.environment_variables`).

/// Expands `${VAR}`, `${VAR:-default}` and `$$`. An unset variable without a default is an
/// error naming the variable (never its value).
pub fn expand(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(rest.get(..pos).unwrap_or(""));
        let after = rest.get(pos + 1..).unwrap_or("");
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err("unterminated '${' (write '$$' for a literal '$')".into());
        };
        let body = body_start.get(..end).unwrap_or("");
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        if !crate::route::is_name(name) {
            return Err(format!(
                "'${{{name}}}' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
            ));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (pass it with vm_config.environment_variables, or write ${{{name}:-default}})"
                ))
            }
        }
        rest = body_start.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}
