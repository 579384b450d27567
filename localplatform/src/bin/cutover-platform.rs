//! `cutover-platform`: the local platform process (router + supervisor + admin API).
//!
//! Prints `ADMIN <addr>`, one `SERVICE <name> <addr>` per service, then `READY` once the
//! initial colour of every service is ready.

use localplatform::admin::Admin;
use localplatform::api::InstancesSpec;
use localplatform::http;
use localplatform::router::Router;
use localplatform::supervisor::Supervisor;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HELP: &str = "\
cutover-platform: the embedded default platform (JTS stand-ins behind an HTTP router)

USAGE: cutover-platform [OPTIONS]

OPTIONS:
  --admin ADDR            admin API address (default 127.0.0.1:9400; port 0 picks one)
  --service NAME=ADDR     a service and its router listen address; repeatable
                          (default: api-gateway, strategy-engine, order-execution,
                          risk-management on 127.0.0.1:0)
  --standin PATH          the jts-standin binary (default: beside this binary)
  --initial-version V     version that blue runs at start (default v1)
  --replicas N            blue replicas per service at start (default 2)
  -h, --help              this text

ENVIRONMENT:
  JTS_FAULTS              fault knobs per version, passed to the stand-ins
";

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("cutover-platform: {msg}");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut admin_addr = "127.0.0.1:9400".to_owned();
    let mut services: Vec<(String, String)> = Vec::new();
    let mut standin = None;
    let mut version = "v1".to_owned();
    let mut replicas = 2u32;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            print!("{HELP}");
            return;
        }
        let value = args
            .next()
            .unwrap_or_else(|| die(format!("{flag} needs a value (see --help)")));
        match flag.as_str() {
            "--admin" => admin_addr = value,
            "--service" => {
                let (n, a) = value
                    .split_once('=')
                    .unwrap_or_else(|| die(format!("--service {value:?}: expected NAME=ADDR")));
                services.push((n.to_owned(), a.to_owned()));
            }
            "--standin" => standin = Some(std::path::PathBuf::from(value)),
            "--initial-version" => version = value,
            "--replicas" => {
                replicas =
                    value.parse().ok().filter(|r| *r > 0).unwrap_or_else(|| {
                        die(format!("--replicas {value:?}: expected a number ≥ 1"))
                    })
            }
            other => die(format!("unknown option {other} (see --help)")),
        }
    }
    if services.is_empty() {
        services = [
            "api-gateway",
            "strategy-engine",
            "order-execution",
            "risk-management",
        ]
        .iter()
        .map(|s| (s.to_string(), "127.0.0.1:0".to_owned()))
        .collect();
    }
    let standin = standin.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("jts-standin")))
            .unwrap_or_else(|| die("cannot locate jts-standin: pass --standin"))
    });
    if !standin.is_file() {
        die(format!(
            "{} is not a file: build it or pass --standin",
            standin.display()
        ));
    }

    let mut listeners = Vec::new();
    for (name, addr) in &services {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| die(format!("cannot listen for {name} on {addr}: {e}")));
        listeners.push((name.clone(), l));
    }
    let bound: Vec<(String, SocketAddr)> = listeners
        .iter()
        .map(|(n, l)| (n.clone(), l.local_addr().expect("bound")))
        .collect();
    let router = Router::new(&bound, "blue");
    let supervisor = Supervisor::new(standin, router.clone());
    let admin_listener = tokio::net::TcpListener::bind(&admin_addr)
        .await
        .unwrap_or_else(|e| die(format!("cannot listen for admin on {admin_addr}: {e}")));
    println!("ADMIN {}", admin_listener.local_addr().expect("bound"));
    for (name, addr) in &bound {
        println!("SERVICE {name} {addr}");
    }
    let shutdown = http::shutdown_on_signal();

    let admin = Arc::new(Admin {
        router: router.clone(),
        supervisor: supervisor.clone(),
    });
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(http::serve(
        admin_listener,
        {
            let admin = admin.clone();
            move |req| admin.clone().handle(req)
        },
        shutdown.clone(),
    )));
    for (name, listener) in listeners {
        let r = router.clone();
        tasks.push(tokio::spawn(http::serve(
            listener,
            move |req| r.clone().proxy(name.clone(), req),
            shutdown.clone(),
        )));
    }
    let _ = std::io::stdout().flush();

    for (name, _) in &bound {
        let spec = InstancesSpec {
            service: name.clone(),
            color: "blue".into(),
            version: version.clone(),
            replicas,
        };
        if let Err(e) = supervisor.apply(&spec).await {
            die(e);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = supervisor.state().await;
        if state
            .services
            .values()
            .all(|s| s.colors["blue"].ready == replicas)
        {
            break;
        }
        if Instant::now() > deadline {
            die("initial instances did not become ready within 30s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("READY");
    let _ = std::io::stdout().flush();

    let mut shutdown = shutdown;
    let _ = shutdown.wait_for(|s| *s).await;
    for t in tasks {
        let _ = t.await;
    }
    supervisor.stop_all().await;
}
