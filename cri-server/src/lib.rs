//! berth's CRI server: where every kubelet call lands.
//!
//! - [`daemon`]: berthd's life (locks, socket, serve, graceful stop).
//! - [`config`]: the TOML config, drop-ins and validation.
//! - [`image`]: CRI `ImageService`, one file per RPC.
//! - [`runtime`]: CRI `RuntimeService`, one file per RPC.
//! - [`introspect`]: berth's side service for berthctl (pull progress).
//! - [`error`]: the one place errors become gRPC statuses; [`edge`] wraps
//!   every handler with it and with [`metrics`] (served by [`metrics_server`]).
//! - [`sandbox`], [`container`]: the pod and container RPCs, one file each;
//!   [`oci`] turns a CRI container config into an OCI spec; [`services`] is
//!   what they share (stores, engine, network).
//! - [`store`]: pod and container metadata (redb) and their state machines;
//!   [`recovery`] reconciles it with the engine and network at start.
//! - [`ctl`]: the berthctl CLI.

pub mod config;
pub mod container;
pub mod ctl;
pub mod daemon;
pub mod edge;
pub mod error;
pub mod image;
pub mod introspect;
pub mod metrics;
pub mod metrics_server;
pub mod observability;
pub mod oci;
pub mod recovery;
pub mod runtime;
pub mod sandbox;
pub mod services;
pub mod store;
pub mod streaming;
