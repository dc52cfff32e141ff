//! Pod sandboxes: what RunPodSandbox builds and StopPodSandbox /
//! RemovePodSandbox take down (the handlers land with issue 4).

pub mod files;
