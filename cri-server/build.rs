fn main() {
    println!("cargo:rerun-if-changed=proto/berth/introspect.proto");
    tonic_prost_build::configure()
        .compile_protos(&["proto/berth/introspect.proto"], &["proto"])
        .expect("compile proto/berth/introspect.proto (needs protoc: apt-get install protobuf-compiler)");
}
