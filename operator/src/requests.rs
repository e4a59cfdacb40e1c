//! Counting and timing every request the operator sends to the API server,
//! by verb and resource: the benchmark reads these to show where a
//! scenario's requests, and the time spent waiting on them, go.
//!
//! A watch counts once and its (open-ended) duration is not timed. The same
//! client bounds how many requests are in flight ([`MAX_IN_FLIGHT`]).

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use futures::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// One series: what was asked of which resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, or
    /// the HTTP method in lower case for anything else.
    pub verb: &'static str,
    /// The resource, with `/subresource` when there is one (`scenarios/status`).
    pub resource: String,
}

/// The two families the request layer feeds.
#[derive(Clone, Default)]
pub struct RequestMetrics {
    /// Requests sent.
    pub count: Family<RequestLabels, Counter>,
    /// Seconds from sending a request to its response's headers (watches excluded).
    pub seconds: Family<RequestLabels, Counter<f64, AtomicU64>>,
}

/// The verb and resource of a request to the Kubernetes API, from its
/// method, path and query alone (pure: no discovery).
pub fn classify(method: &http::Method, path: &str, query: Option<&str>) -> RequestLabels {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // `/api/v1/...` or `/apis/<group>/<version>/...`.
    let rest: &[&str] = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => &[],
    };
    // Skip `namespaces/<ns>` unless the namespace itself is the object.
    let rest = match rest {
        ["namespaces", _ns, resource, tail @ ..] => {
            let mut v = vec![*resource];
            v.extend_from_slice(tail);
            v
        }
        other => other.to_vec(),
    };
    let (resource, named) = match rest.as_slice() {
        [] => (String::from("other"), false),
        [resource] => ((*resource).to_string(), false),
        [resource, _name] => ((*resource).to_string(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
    };
    let watching = query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true"));
    let verb = match *method {
        http::Method::GET if watching => "watch",
        http::Method::GET if named => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    };
    RequestLabels { verb, resource }
}

/// Requests in flight at once, at most. The client speaks HTTP/1.1, so
/// each request in flight holds a connection of its own (with its TLS
/// buffers): a thousand scenarios reconciled at once opened nearly a
/// thousand and took the operator's memory from 74 to 260 MiB, while the
/// API server, on the cores it shares, answers no faster for it. Past the
/// limit a request waits for a free slot in the operator instead of in the
/// API server's queue. A watch holds its slot only until its answer starts.
pub const MAX_IN_FLIGHT: usize = 64;

/// A client for the inferred config whose every request is counted and
/// timed in `metrics` (the time includes any wait for a slot), with at most
/// [`MAX_IN_FLIGHT`] in flight.
pub async fn counted_client(metrics: RequestMetrics) -> anyhow::Result<kube::Client> {
    let config = kube::Config::infer().await?;
    let timed = tower::layer::layer_fn(move |inner| Timed {
        inner,
        metrics: metrics.clone(),
    });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::limit::ConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
        .with_layer(&timed)
        .build())
}

/// The service that counts and times each request it passes on.
#[derive(Clone)]
pub struct Timed<S> {
    inner: S,
    metrics: RequestMetrics,
}

impl<S, B> tower::Service<http::Request<B>> for Timed<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let labels = classify(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        self.metrics.count.get_or_create(&labels).inc();
        let timed = (labels.verb != "watch").then(|| self.metrics.seconds.clone());
        let started = Instant::now();
        self.inner
            .call(request)
            .map(move |result| {
                if let Some(seconds) = timed {
                    seconds
                        .get_or_create(&labels)
                        .inc_by(started.elapsed().as_secs_f64());
                }
                result
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn of(method: Method, path: &str, query: Option<&str>) -> (&'static str, String) {
        let l = classify(&method, path, query);
        (l.verb, l.resource)
    }

    #[test]
    fn namespaced_named_and_collection_paths_are_told_apart() {
        let ns = "/apis/apps/v1/namespaces/cr-a/deployments";
        assert_eq!(of(Method::GET, ns, None), ("list", "deployments".into()));
        assert_eq!(
            of(Method::GET, &format!("{ns}/workspace"), None),
            ("get", "deployments".into())
        );
        assert_eq!(
            of(
                Method::PATCH,
                &format!("{ns}/workspace"),
                Some("fieldManager=x")
            ),
            ("patch", "deployments".into())
        );
        assert_eq!(
            of(Method::DELETE, &format!("{ns}/workspace"), None),
            ("delete", "deployments".into())
        );
        assert_eq!(of(Method::POST, ns, None), ("create", "deployments".into()));
    }

    #[test]
    fn a_namespace_itself_and_subresources_are_their_own_resources() {
        assert_eq!(
            of(Method::GET, "/api/v1/namespaces/cr-a", None),
            ("get", "namespaces".into())
        );
        assert_eq!(
            of(Method::PATCH, "/api/v1/namespaces/cr-a", None),
            ("patch", "namespaces".into())
        );
        assert_eq!(
            of(
                Method::PATCH,
                "/apis/cleanroom.io/v1alpha1/scenarios/s/status",
                None
            ),
            ("patch", "scenarios/status".into())
        );
        assert_eq!(
            of(Method::PUT, "/api/v1/namespaces/cr-a/pods/p/status", None),
            ("update", "pods/status".into())
        );
    }

    #[test]
    fn a_watch_is_a_watch_whatever_else_the_query_says() {
        assert_eq!(
            of(
                Method::GET,
                "/apis/cleanroom.io/v1alpha1/scenarios",
                Some("labelSelector=a%3Db&watch=true&resourceVersion=5")
            ),
            ("watch", "scenarios".into())
        );
        assert_eq!(
            of(
                Method::GET,
                "/apis/cleanroom.io/v1alpha1/scenarios",
                Some("watchy=true")
            ),
            ("list", "scenarios".into())
        );
        assert_eq!(of(Method::GET, "/version", None), ("list", "other".into()));
    }
}
