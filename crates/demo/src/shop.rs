//! The simulated shop: five services calling each other, a database, a
//! cache and a payment provider, with incidents and deployments on a cycle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sonde_sdk::attributes::KeyValue;
use sonde_sdk::logs::{Logger, Severity};
use sonde_sdk::metrics::{Counter, Histogram};
use sonde_sdk::propagation;
use sonde_sdk::sdk::{init, Config, Sdk};
use sonde_sdk::trace::{Span, SpanKind, Status, Tracer};

use crate::DemoConfig;

/// A small, fast, deterministic generator: the demo needs variety, not
/// cryptography.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Exponential with mean 1.
    pub fn exp(&mut self) -> f64 {
        -(1.0 - self.unit()).ln()
    }

    /// A latency: log-normal-ish around `median_ms`, with a long tail.
    pub fn latency(&mut self, median_ms: f64) -> Duration {
        let z = (self.unit() + self.unit() + self.unit() - 1.5) * 2.0;
        Duration::from_secs_f64((median_ms * (0.45 * z).exp()).max(0.2) / 1000.0)
    }
}

/// One instrumented service.
struct Service {
    name: &'static str,
    sdk: Sdk,
    tracer: Tracer,
    logger: Logger,
    duration: Histogram<f64>,
    requests: Counter<u64>,
}

impl Service {
    fn new(
        cfg: &DemoConfig,
        name: &'static str,
        host: &'static str,
        version: &'static str,
    ) -> Service {
        let sdk = init(Config {
            service_name: name.to_string(),
            endpoint: cfg.endpoint.clone(),
            api: cfg.api.clone(),
            resource: vec![
                KeyValue::new("host.name", host),
                KeyValue::new("service.version", version),
                KeyValue::new("deployment.environment", "demo"),
                KeyValue::new("service.namespace", "shop"),
            ],
            metric_interval: cfg.metric_interval,
            client_id: Some(format!("demo-{name}")),
            ..Config::default()
        });
        let meter = sdk.meter();
        let duration = meter
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Duration of HTTP server requests.")
            .build();
        let requests = meter
            .u64_counter("http.server.requests")
            .with_description("HTTP server requests.")
            .build();
        Service {
            name,
            tracer: sdk.tracer("shop"),
            logger: sdk.logger("shop"),
            sdk,
            duration,
            requests,
        }
    }
}

/// How a handler ended.
enum Outcome {
    Ok,
    Fail(u16, &'static str),
}

impl Outcome {
    /// Runs the next step only if this one succeeded.
    fn and_then(self, next: impl FnOnce() -> Outcome) -> Outcome {
        match self {
            Outcome::Ok => next(),
            fail => fail,
        }
    }
}

pub struct Shop {
    frontend: Service,
    catalog: Service,
    checkout: Service,
    inventory: Service,
    payments: Service,
}

/// Where the cycle is, for incidents: `phase` runs from 0 to 1 each period.
#[derive(Clone, Copy)]
struct Conditions {
    payments_slow: bool,
    db_slow: bool,
}

/// The injected incidents: name, and the part of each period they cover.
/// The demo announces each start and end as a `demo.incident.started` /
/// `demo.incident.ended` event (the ground truth its tests time from).
pub const INCIDENTS: [(&str, std::ops::Range<f64>); 2] =
    [("payment-provider", 0.50..0.60), ("database", 0.80..0.83)];

impl Conditions {
    fn at(phase: f64) -> Conditions {
        Conditions {
            payments_slow: INCIDENTS[0].1.contains(&phase),
            db_slow: INCIDENTS[1].1.contains(&phase),
        }
    }
}

const PRODUCTS: u64 = 40;
const USERS: u64 = 300;

impl Shop {
    pub fn new(cfg: &DemoConfig) -> Shop {
        Shop {
            frontend: Service::new(cfg, "frontend", "web-1", "2.3.0"),
            catalog: Service::new(cfg, "catalog", "app-1", "1.8.1"),
            checkout: Service::new(cfg, "checkout", "app-1", "3.0.4"),
            inventory: Service::new(cfg, "inventory", "app-2", "1.2.0"),
            payments: Service::new(cfg, "payments", "app-2", "1.4.1"),
        }
    }

    pub fn flush(&self, timeout: Duration) {
        for s in [
            &self.frontend,
            &self.catalog,
            &self.checkout,
            &self.inventory,
            &self.payments,
        ] {
            s.sdk.tracer_provider().force_flush(timeout);
            s.sdk.logger_provider().force_flush(timeout);
            s.sdk.meter_provider().force_flush();
        }
    }

    /// One user visit: a page or two, sometimes a checkout.
    pub fn visit(&self, rng: &mut Rng, phase: f64) {
        let c = Conditions::at(phase);
        let user = format!("user-{}", rng.below(USERS));
        let session = format!("s-{:08x}", rng.next() as u32);
        let product = rng.below(PRODUCTS);
        let r = rng.unit();
        if r < 0.35 {
            self.page(rng, c, &user, &session, "GET", "/", None);
        } else if r < 0.85 {
            self.page(
                rng,
                c,
                &user,
                &session,
                "GET",
                "/product/{id}",
                Some(product),
            );
        } else {
            self.page(
                rng,
                c,
                &user,
                &session,
                "GET",
                "/product/{id}",
                Some(product),
            );
            self.page(rng, c, &user, &session, "POST", "/checkout", Some(product));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn page(
        &self,
        rng: &mut Rng,
        c: Conditions,
        user: &str,
        session: &str,
        method: &'static str,
        route: &'static str,
        product: Option<u64>,
    ) {
        let fe = &self.frontend;
        fe.logger.user_event(
            "browser.page_view",
            Some(user),
            Some(session),
            [KeyValue::new("page.route", route)],
        );
        self.serve(fe, None, method, route, rng, |rng, span| {
            span.set_attribute(KeyValue::new("user.id", user.to_string()));
            span.set_attribute(KeyValue::new("session.id", session.to_string()));
            std::thread::sleep(rng.latency(2.0));
            match (route, product) {
                ("/", _) => self.call(fe, &self.catalog, "GET", "/products", rng, |rng, _| {
                    self.db(&self.catalog, "SELECT", "products", rng, c.db_slow)
                }),
                ("/product/{id}", Some(p)) => {
                    span.set_attribute(KeyValue::new("product.id", p as i64));
                    self.call(
                        fe,
                        &self.catalog,
                        "GET",
                        "/products/{id}",
                        rng,
                        |rng, span| {
                            span.set_attribute(KeyValue::new("product.id", p as i64));
                            self.cache(&self.catalog, "GET", rng).and_then(|| {
                                self.db(&self.catalog, "SELECT", "products", rng, c.db_slow)
                            })
                        },
                    )
                }
                (_, Some(p)) => self.checkout(rng, c, user, p),
                _ => Outcome::Ok,
            }
        });
    }

    fn checkout(&self, rng: &mut Rng, c: Conditions, user: &str, product: u64) -> Outcome {
        let co = &self.checkout;
        self.call(&self.frontend, co, "POST", "/checkout", rng, |rng, span| {
            let amount = 5.0 + rng.below(20_000) as f64 / 100.0;
            span.set_attribute(KeyValue::new("order.amount", amount));
            if let Outcome::Fail(code, why) =
                self.call(co, &self.inventory, "POST", "/reserve", rng, |rng, _| {
                    self.cache(&self.inventory, "SET", rng).and_then(|| {
                        if rng.unit() < 0.01 {
                            Outcome::Fail(409, "out of stock")
                        } else {
                            Outcome::Ok
                        }
                    })
                })
            {
                co.logger.emit(
                    Severity::WARN,
                    format!("reservation failed for product {product}: {why}"),
                    [KeyValue::new("product.id", product as i64)],
                );
                return Outcome::Fail(code, why);
            }
            let charged = self.call(co, &self.payments, "POST", "/charge", rng, |rng, span| {
                span.set_attribute(KeyValue::new("payment.amount", amount));
                self.provider(rng, c)
            });
            if let Outcome::Fail(_, why) = charged {
                co.logger.emit(
                    Severity::ERROR,
                    format!("payment failed for {user}: {why}"),
                    [KeyValue::new("order.amount", amount)],
                );
                return Outcome::Fail(502, "payment failed");
            }
            if let Outcome::Fail(code, why) = self.db(co, "INSERT", "orders", rng, c.db_slow) {
                return Outcome::Fail(code, why);
            }
            co.logger.emit(
                Severity::INFO,
                format!("order placed by {user}: {amount:.2} USD"),
                [KeyValue::new("order.amount", amount)],
            );
            co.logger.user_event(
                "checkout.completed",
                Some(user),
                None,
                [
                    KeyValue::new("order.amount", amount),
                    KeyValue::new("product.id", product as i64),
                ],
            );
            Outcome::Ok
        })
    }

    /// The external payment provider: slow and failing during incidents.
    fn provider(&self, rng: &mut Rng, c: Conditions) -> Outcome {
        let pay = &self.payments;
        let mut span = pay.tracer.start("POST api.payments.example/v1/charges");
        span.set_kind(SpanKind::Client);
        span.set_attributes([
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("server.address", "api.payments.example"),
            KeyValue::new("peer.service", "payments-provider"),
        ]);
        let (median, fail) = if c.payments_slow {
            (420.0, 0.25)
        } else {
            (70.0, 0.01)
        };
        std::thread::sleep(rng.latency(median));
        let out = if rng.unit() < fail {
            span.set_attribute(KeyValue::new("http.response.status_code", 503i64));
            span.set_status(Status::Error("provider unavailable".into()));
            pay.logger
                .emit(Severity::ERROR, "payment provider returned 503", []);
            Outcome::Fail(503, "provider unavailable")
        } else {
            span.set_attribute(KeyValue::new("http.response.status_code", 200i64));
            Outcome::Ok
        };
        span.end();
        out
    }

    fn db(
        &self,
        svc: &Service,
        op: &'static str,
        table: &'static str,
        rng: &mut Rng,
        slow: bool,
    ) -> Outcome {
        let mut span = svc.tracer.start(format!("{op} {table}"));
        span.set_kind(SpanKind::Client);
        span.set_attributes([
            KeyValue::new("db.system", "postgresql"),
            KeyValue::new("db.operation.name", op),
            KeyValue::new("db.collection.name", table),
            KeyValue::new("server.address", "db-1"),
        ]);
        std::thread::sleep(rng.latency(if slow { 60.0 } else { 4.0 }));
        let out = if rng.unit() < 0.002 {
            span.set_status(Status::Error("deadlock detected".into()));
            svc.logger.emit(
                Severity::ERROR,
                format!("{op} {table}: deadlock detected"),
                [],
            );
            Outcome::Fail(500, "database error")
        } else {
            Outcome::Ok
        };
        span.end();
        out
    }

    fn cache(&self, svc: &Service, op: &'static str, rng: &mut Rng) -> Outcome {
        let mut span = svc.tracer.start(op);
        span.set_kind(SpanKind::Client);
        span.set_attributes([
            KeyValue::new("db.system", "redis"),
            KeyValue::new("db.operation.name", op),
            KeyValue::new("server.address", "cache-1"),
        ]);
        std::thread::sleep(rng.latency(0.6));
        span.end();
        Outcome::Ok
    }

    /// A call from one service to another: a client span in the caller,
    /// the trace context carried in headers, a server span in the callee.
    fn call(
        &self,
        from: &Service,
        to: &Service,
        method: &'static str,
        route: &'static str,
        rng: &mut Rng,
        handler: impl FnOnce(&mut Rng, &mut Span) -> Outcome,
    ) -> Outcome {
        let mut client = from.tracer.start(format!("{method} {route}"));
        client.set_kind(SpanKind::Client);
        client.set_attributes([
            KeyValue::new("http.request.method", method),
            KeyValue::new("server.address", to.name),
            KeyValue::new("peer.service", to.name),
        ]);
        let mut headers: HashMap<String, String> = HashMap::new();
        propagation::inject(client.context(), &mut |k, v| {
            headers.insert(k.to_string(), v.to_string());
        });
        std::thread::sleep(rng.latency(0.4));
        let out = self.serve(to, Some(&headers), method, route, rng, handler);
        match &out {
            Outcome::Ok => client.set_attribute(KeyValue::new("http.response.status_code", 200i64)),
            Outcome::Fail(code, why) => {
                client.set_attribute(KeyValue::new("http.response.status_code", *code as i64));
                client.set_status(Status::Error((*why).into()));
            }
        }
        client.end();
        out
    }

    /// A request handled by `svc`: the server span, metrics and errors.
    fn serve(
        &self,
        svc: &Service,
        headers: Option<&HashMap<String, String>>,
        method: &'static str,
        route: &'static str,
        rng: &mut Rng,
        handler: impl FnOnce(&mut Rng, &mut Span) -> Outcome,
    ) -> Outcome {
        let started = Instant::now();
        let parent = headers.and_then(|h| propagation::extract(|k| h.get(k).map(String::as_str)));
        let name = format!("{method} {route}");
        let mut span = match &parent {
            Some(p) => svc.tracer.start_with_parent(name, p),
            None => svc.tracer.start_root(name),
        };
        span.set_kind(SpanKind::Server);
        span.set_attributes([
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.route", route),
        ]);
        let guard = span.enter();
        let out = handler(rng, &mut span);
        drop(guard);
        let code: u16 = match &out {
            Outcome::Ok => 200,
            Outcome::Fail(code, why) => {
                span.set_status(Status::Error((*why).into()));
                *code
            }
        };
        span.set_attribute(KeyValue::new("http.response.status_code", code as i64));
        span.end();
        let attrs = [
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.route", route),
            KeyValue::new("http.response.status_code", code as i64),
        ];
        svc.duration.record(started.elapsed().as_secs_f64(), &attrs);
        svc.requests.add(1, &attrs);
        out
    }

    /// Deployments and their rollbacks, as events, on the incident cycle:
    /// a bad payments release goes out just before its incident and is
    /// rolled back at its end; and each incident's start and end.
    pub fn operations(&self, stop: &AtomicBool, started: Instant, period: Duration) {
        let mut last_phase = 0.0;
        while !stop.load(Ordering::Relaxed) {
            let phase = (started.elapsed().as_secs_f64() / period.as_secs_f64()).fract();
            let crossed = |at: f64| {
                if phase >= last_phase {
                    last_phase < at && phase >= at
                } else {
                    // A new period began.
                    at > last_phase || phase >= at
                }
            };
            if crossed(0.49) {
                self.deploy(&self.payments, "1.5.0", "rolling");
            }
            if crossed(0.60) {
                self.deploy(&self.payments, "1.4.1", "rollback");
            }
            for (i, (name, range)) in INCIDENTS.iter().enumerate() {
                let svc = if i == 0 {
                    &self.payments
                } else {
                    &self.catalog
                };
                if crossed(range.start) {
                    self.incident(svc, name, "demo.incident.started");
                }
                if crossed(range.end) {
                    self.incident(svc, name, "demo.incident.ended");
                }
            }
            last_phase = phase;
            crate::sleep_until_stopped(stop, Duration::from_millis(100));
        }
    }

    fn incident(&self, svc: &Service, name: &'static str, event: &'static str) {
        svc.logger
            .event(event, [KeyValue::new("demo.incident", name)]);
    }

    fn deploy(&self, svc: &Service, version: &'static str, strategy: &'static str) {
        svc.logger.event(
            "deployment",
            [
                KeyValue::new("service.version", version),
                KeyValue::new("deployment.strategy", strategy),
                KeyValue::new("deployment.target", svc.name),
            ],
        );
        svc.logger.emit(
            Severity::INFO,
            format!("deployed {} {version} ({strategy})", svc.name),
            [],
        );
    }
}
