//! cleanroom: the authorized operation domain for public data, as a Kubernetes operator.
