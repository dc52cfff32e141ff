//! A local OCI registry: Debian's `docker-registry` (distribution 2.8)
//! bound to 127.0.0.1 on a free port, storing into a private directory.
//!
//! Three ways to guard it:
//! - [`Auth::None`]: anonymous pull and push;
//! - [`Auth::Htpasswd`]: HTTP basic auth against a bcrypt htpasswd file
//!   (distribution 2.8 does not insist on TLS for it);
//! - [`Auth::Token`]: bearer tokens from a [`crate::token::TokenServer`].
//!
//! With `tls`, a throwaway CA and a server certificate for 127.0.0.1 are
//! generated with `openssl`; clients trust `ca.pem` ([`Registry::ca_pem`]).
//!
//! The registry process is a [`Guarded`] child: stopped on drop, killed if
//! this process dies. Dropping the [`Registry`] also removes its directory.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::{self, Guarded};
use crate::token::run_openssl;

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

#[derive(Clone, Debug)]
pub enum Auth {
    None,
    /// (user, password) pairs.
    Htpasswd(Vec<(String, String)>),
    Token {
        realm: String,
        service: String,
        issuer: String,
        /// The token signer's certificate.
        rootcertbundle: PathBuf,
    },
}

#[derive(Clone, Debug)]
pub struct RegistryOptions {
    pub auth: Auth,
    pub tls: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            auth: Auth::None,
            tls: false,
        }
    }
}

pub struct Registry {
    port: u16,
    tls: bool,
    dir: PathBuf,
    keep_dir: bool,
    process: Option<Guarded>,
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn make_tls(dir: &Path) -> Result<()> {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    run_openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "3",
        "-subj",
        "/CN=berth test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ])?;
    run_openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ])?;
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    run_openssl(&[
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "3",
        "-extfile",
        &p("server.ext"),
        "-out",
        &p("server.pem"),
    ])?;
    Ok(())
}

fn write_htpasswd(path: &Path, users: &[(String, String)]) -> Result<()> {
    let mut s = String::new();
    for (u, p) in users {
        // Cost 5 keeps logins fast in tests; the format is what htpasswd -B writes.
        let h = bcrypt::hash(p, 5).context("bcrypt")?;
        s.push_str(&format!("{u}:{h}\n"));
    }
    std::fs::write(path, s)?;
    Ok(())
}

fn config_yaml(dir: &Path, port: u16, opts: &RegistryOptions) -> String {
    let d = dir.display();
    let mut y = format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {d}/data\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: berth-test-secret\n"
    );
    if opts.tls {
        y.push_str(&format!(
            "  tls:\n    certificate: {d}/server.pem\n    key: {d}/server.key\n"
        ));
    }
    match &opts.auth {
        Auth::None => {}
        Auth::Htpasswd(_) => {
            y.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-basic\n    path: {d}/htpasswd\n"
            ));
        }
        Auth::Token {
            realm,
            service,
            issuer,
            rootcertbundle,
        } => {
            y.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                rootcertbundle.display()
            ));
        }
    }
    y
}

impl Registry {
    /// Starts a registry storing under a new temp directory.
    pub fn start(opts: RegistryOptions) -> Result<Registry> {
        let dir = tempfile::Builder::new().prefix("berth-registry-").tempdir()?.keep();
        match Registry::start_in(&dir, opts) {
            Ok(mut r) => {
                r.keep_dir = false;
                Ok(r)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Starts a registry storing under `dir` (kept on drop).
    pub fn start_in(dir: &Path, opts: RegistryOptions) -> Result<Registry> {
        if !Path::new(REGISTRY_BIN).exists() {
            bail!("{REGISTRY_BIN} not found (install the docker-registry package)");
        }
        std::fs::create_dir_all(dir.join("data"))?;
        if opts.tls {
            make_tls(dir)?;
        }
        if let Auth::Htpasswd(users) = &opts.auth {
            write_htpasswd(&dir.join("htpasswd"), users)?;
        }
        let mut last_err = None;
        // The port is free when we look and taken when the registry binds;
        // another process may win the race, so retry with a new port.
        for _ in 0..5 {
            let port = free_port()?;
            let cfg = dir.join("config.yml");
            std::fs::write(&cfg, config_yaml(dir, port, &opts))?;
            let log = dir.join("registry.log");
            let mut cmd = Command::new(REGISTRY_BIN);
            cmd.arg("serve").arg(&cfg);
            let mut p = Guarded::spawn("docker-registry", cmd, &log)?;
            match wait_listening(&mut p, port, &log) {
                Ok(()) => {
                    return Ok(Registry {
                        port,
                        tls: opts.tls,
                        dir: dir.to_path_buf(),
                        keep_dir: true,
                        process: Some(p),
                    })
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, the registry host in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT` or `https://…`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The CA that signed the server certificate (TLS registries only).
    pub fn ca_pem(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.join("ca.pem"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last few KiB of the registry's log, for error messages.
    pub fn log_tail(&self) -> String {
        process::tail(&self.dir.join("registry.log"), 4096)
    }

    /// Stops the registry (it keeps its storage until dropped).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop(Duration::from_secs(5));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn wait_listening(p: &mut Guarded, port: u16, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = p.try_wait() {
            bail!(
                "docker-registry exited ({status}) before listening on port {port}: {}",
                process::tail(log, 2048)
            );
        }
        // Wait for distribution's own "listening on" line: a successful
        // connect alone could reach another process that won the port.
        let listening = format!("listening on 127.0.0.1:{port}");
        if process::tail(log, 1 << 16).contains(&listening) && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "docker-registry did not listen on 127.0.0.1:{port} within 20s: {}",
                process::tail(log, 2048)
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
