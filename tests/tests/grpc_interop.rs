//! gRPC clients other than grpc-go against a real berthd: Python `grpcio`
//! (grpc-core, as the C++ and Ruby clients) sends the unix socket path as
//! the HTTP/2 `:authority`, which berthd's HTTP/2 server refused until the
//! connection adapter (`daemon::authority`) rewrote it. Many calls on one
//! channel exercise the HPACK tables on both sides; a request whose
//! protobuf does not decode is INVALID_ARGUMENT naming the field.
//!
//! Needs python3 with `grpcio` (hack/lib.sh installs it); skips otherwise.

use std::process::Command;

use berth_tests::daemon::Berthd;
use berth_tests::require_root;

const CLIENT: &str = r#"
import grpc, sys
ch = grpc.insecure_channel("unix://" + sys.argv[1])
def call(method):
    return ch.unary_unary(method, request_serializer=lambda x: x, response_deserializer=lambda x: x)
version = call('/runtime.v1.RuntimeService/Version')
for i in range(100):
    assert b'berth' in version(b'', timeout=10)
print("versions ok")
print("images", len(call('/runtime.v1.ImageService/ListImages')(b'', timeout=10)))
print("pods", len(call('/runtime.v1.RuntimeService/ListPodSandbox')(b'', timeout=10)))
try:
    call('/runtime.v1.RuntimeService/ContainerStatus')(b'\x0a\x02\xff\xfe', timeout=10)
    print("bad utf8 accepted")
except grpc.RpcError as e:
    print("bad utf8:", e.code().name, e.details())
"#;

fn have_grpcio() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn grpcio_calls_berthd_on_its_unix_socket() {
    require_root!();
    if !have_grpcio() {
        eprintln!("SKIPPED grpcio_calls_berthd_on_its_unix_socket: python3 has no grpcio (pip install grpcio, or hack/test.sh)");
        return;
    }
    // Its own network names, so its start-up cleanup touches nobody else's.
    let d = Berthd::start("[network]\nbridge = \"berthg01\"\nsubnet = \"10.197.0.0/24\"\nchain_prefix = \"BTG01\"\n")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let out = Command::new("python3")
        .args(["-c", CLIENT])
        .arg(&d.socket)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", d.log_tail());
    assert!(stdout.contains("versions ok"), "{stdout}");
    assert!(stdout.contains("images "), "{stdout}");
    assert!(stdout.contains("pods "), "{stdout}");
    assert!(
        stdout.contains("bad utf8: INVALID_ARGUMENT") && stdout.contains("ContainerStatusRequest.container_id"),
        "{stdout}"
    );
}
