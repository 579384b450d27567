fn main() {
    println!("cargo:rerun-if-changed=cutover/v1/cutover.proto");
    prost_build::Config::new()
        // Deterministic iteration in workflow code: maps are BTreeMaps.
        .btree_map(["."])
        .type_attribute(
            ".",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        )
        .compile_protos(&["cutover/v1/cutover.proto"], &["."])
        .expect("protoc compiles cutover.proto (install protobuf-compiler)");
}
