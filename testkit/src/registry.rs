//! A real OCI registry (the CNCF distribution registry, `registry serve`) on 127.0.0.1, and
//! `crane` pushing images to it: both built by scripts/registry-build.sh and cached
//! (CUTOVER_REGISTRY_BIN overrides the folder). Optionally behind htpasswd (bcrypt) basic
//! authentication, as a private registry is.

use crate::{free_port, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The cache folder scripts/registry-build.sh fills (bin/registry, bin/crane, bin/actionlint).
pub fn bin_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("CUTOVER_REGISTRY_BIN") {
        return PathBuf::from(p);
    }
    crate::cluster::testbin_cache().join("oci-registry-v3.1.2-crane-v0.22.1-actionlint-v1.7.12")
}

pub struct Registry {
    child: Child,
    /// `127.0.0.1:port`: the registry part of an image reference.
    pub host: String,
    dir: PathBuf,
    /// The login the registry requires (user, password), if any.
    pub login: Option<(String, String)>,
}

impl Registry {
    /// A registry storing under `dir/registry`; `login`: require these credentials.
    pub fn start(dir: &Path, login: Option<(&str, &str)>) -> Self {
        let dir = dir.join("registry");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let host = format!("127.0.0.1:{}", free_port());
        let auth = match login {
            Some((user, password)) => {
                let hash = bcrypt::hash(password, 5).unwrap();
                std::fs::write(dir.join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: cutover-test\n    path: {}\n",
                    dir.join("htpasswd").display()
                )
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: {host}\n{auth}",
            data = dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new(bin_dir().join("bin/registry"))
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (run scripts/registry-build.sh)",
                    bin_dir().join("bin/registry").display()
                )
            });
        let base = format!("http://{host}/v2/");
        wait_until("the OCI registry answers", Duration::from_secs(30), || {
            matches!(
                crate::blocking::Client::new().status(&base),
                Some(200 | 401)
            )
        });
        let mut r = Self {
            child,
            host,
            dir,
            login: login.map(|(u, p)| (u.to_owned(), p.to_owned())),
        };
        if let Some((u, p)) = r.login.clone() {
            r.crane(&["auth", "login", &r.host.clone(), "-u", &u, "-p", &p]);
        }
        r
    }

    /// Runs `crane` with this registry's own Docker config (its login, when it has one).
    pub fn crane(&mut self, args: &[&str]) -> String {
        let out = Command::new(bin_dir().join("bin/crane"))
            .args(args)
            .arg("--insecure")
            .env("DOCKER_CONFIG", self.dir.join("docker"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "crane {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Pushes a one-layer image (a file naming it) as `<host>/<repository>:<tag>`; returns its
    /// digest as the registry reports it.
    pub fn push(&mut self, repository: &str, tag: &str) -> String {
        let layer_dir = self.dir.join("layers").join(repository).join(tag);
        std::fs::create_dir_all(&layer_dir).unwrap();
        std::fs::write(layer_dir.join("image"), format!("{repository}:{tag}\n")).unwrap();
        let tar = layer_dir.with_extension("tar");
        let ok = Command::new("tar")
            .args(["-cf", &tar.display().to_string(), "-C"])
            .arg(&layer_dir)
            .arg("image")
            .status()
            .unwrap()
            .success();
        assert!(ok, "tar of the layer");
        let reference = format!("{}/{repository}:{tag}", self.host);
        self.crane(&[
            "append",
            "--new_layer",
            &tar.display().to_string(),
            "--new_tag",
            &reference,
        ]);
        self.crane(&["digest", &reference])
    }

    /// The Docker config.json holding this registry's login, as a worker reads it.
    pub fn auth_file(&self) -> PathBuf {
        self.dir.join("docker").join("config.json")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
