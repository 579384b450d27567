//! `jts-standin`: one instance of a JTS stand-in service. Prints `LISTENING <addr>` once bound.

use localplatform::{faults, http, standin::Standin};
use std::io::Write;

fn usage() -> ! {
    eprintln!(
        "usage: jts-standin --service NAME --version VERSION --color blue|green [--listen 127.0.0.1:0]\n\
         faults per version come from JTS_FAULTS (see localplatform::faults)"
    );
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut service, mut version, mut color, mut listen) =
        (None, None, None, "127.0.0.1:0".to_owned());
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--service" => service = Some(value),
            "--version" => version = Some(value),
            "--color" => color = Some(value),
            "--listen" => listen = value,
            _ => usage(),
        }
    }
    let (Some(service), Some(version), Some(color)) = (service, version, color) else {
        usage()
    };
    let spec = std::env::var("JTS_FAULTS").unwrap_or_default();
    let faults = faults::faults_for(&spec, &service, &version).unwrap_or_else(|e| {
        eprintln!("jts-standin: {e}");
        std::process::exit(2)
    });
    let app = Standin::new(service, version, color, faults);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .unwrap_or_else(|e| {
            eprintln!("jts-standin: cannot listen on {listen}: {e}");
            std::process::exit(1)
        });
    let addr = listener.local_addr().expect("bound");
    let _ = app.instance.set(addr.to_string());
    println!("LISTENING {addr}");
    let _ = std::io::stdout().flush();
    if let Some(after) = app.crash_after() {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            eprintln!("jts-standin: injected crash");
            std::process::exit(137)
        });
    }
    let shutdown = http::shutdown_on_signal();
    http::serve(listener, move |req| app.clone().handle(req), shutdown).await;
}
