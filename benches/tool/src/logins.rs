//! `gate-bench logins`: complete logins through the gate and the emulator, over HTTP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Result;

/// The emulator's sandbox password for [`claveunica_core::testkit::maria`].
const PASSWORD: &str = "testing";

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).timeout(Duration::from_secs(15)).build()
}

fn call(req: ureq::Request, form: Option<&[(&str, &str)]>) -> Result<ureq::Response> {
    let r = match form {
        Some(f) => req.send_form(f),
        None => req.call(),
    };
    match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => Ok(r),
        Err(e) => Err(e.to_string()),
    }
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or("").to_string()
}

/// One login as a browser makes it: protected page, provider's form, form post, callback.
fn login(agent: &ureq::Agent, base: &str) -> Result<()> {
    let r = call(agent.get(&format!("{base}/private")), None)?;
    if r.status() != 302 {
        return Err(format!("GET /private: {}", r.status()));
    }
    let flow = r.all("set-cookie").into_iter().map(cookie_pair).collect::<Vec<_>>().join("; ");
    let authorize = r.header("location").ok_or("no location")?.to_string();
    let parsed = url::Url::parse(&authorize).map_err(|e| e.to_string())?;
    let params: Vec<(String, String)> = parsed.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let form_page = call(agent.get(&authorize), None)?;
    if form_page.status() != 200 {
        return Err(format!("authorize form: {}", form_page.status()));
    }
    let _ = form_page.into_string();
    let mut fields: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| ["client_id", "redirect_uri", "state", "nonce", "scope"].contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    fields.extend([("run", "44.444.444-4"), ("password", PASSWORD), ("login", "1")]);
    let submit = format!("{}://{}/openid/authorize/", parsed.scheme(), parsed.host_str().unwrap_or("127.0.0.1"));
    let submit = match parsed.port() {
        Some(p) => submit.replacen("/openid", &format!(":{p}/openid"), 1),
        None => submit,
    };
    let r = call(agent.post(&submit), Some(&fields))?;
    let callback = r.header("location").ok_or_else(|| format!("provider answered {}", r.status()))?.to_string();
    let r = call(agent.get(&callback).set("cookie", &flow), None)?;
    let sealed = r
        .all("set-cookie")
        .iter()
        .any(|c| c.starts_with("claveunica_session=") && !c.starts_with("claveunica_session=;"));
    if r.status() != 302 || !sealed {
        return Err(format!("callback: {} without a session", r.status()));
    }
    Ok(())
}

pub fn logins(base: &str, n: usize, parallel: usize) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..parallel)
        .map(|_| {
            let (next, base) = (Arc::clone(&next), base.to_string());
            std::thread::spawn(move || -> Result<()> {
                let agent = agent();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    login(&agent, &base)?;
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "a login thread panicked".to_string())??;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("logins {n} seconds {secs:.3} logins_per_s {:.1}", n as f64 / secs);
    Ok(())
}
