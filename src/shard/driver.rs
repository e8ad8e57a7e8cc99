//! The shard's entry points: what happens when a connection delivers a
//! CONNECT or a packet, when it ends, when a timer fires, when the inbox
//! has messages, when the broker stops.
//!
//! Each entry point feeds one input to a session, applies the outbox it
//! wrote, then runs the deferred routing. None of them drains the inbox
//! except [`Core::drain_inbox`], which the connection loop calls once per
//! read batch before handling it and the inbox task calls when idle.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use ringmq_codec::{Connect, DecodeError, Packet, ProtocolVersion, QoS, ReasonCode};
use ringmq_route::{owner_shard, ShardId};
use ringmq_session::{
    authorize, keepalive_timeout_ms, negotiate, refuse_connect, Action, CloseCause, Denial,
    Session, SessionId, Tick, Timer, V3_UNACCEPTABLE_PROTOCOL,
};
use tracing::{debug, warn};

use super::apply::{Adopt, Core};
use super::link::{AuthState, ClaimState, Link, LinkId};
use super::msg::Msg;
use super::ratelimit::Gate;
use super::timers::TimerEvent;
use crate::stats::ShardStats;

impl Core {
    /// Registers a new connection; arms its CONNECT deadline unless it was
    /// handed over by the shard that accepted it (that one armed it).
    pub(crate) fn new_link(
        &mut self,
        peer: std::net::SocketAddr,
        adopted: bool,
        slot: u32,
    ) -> Rc<Link> {
        self.next_link = self.next_link.wrapping_add(1);
        let id = LinkId::new(self.next_link, slot);
        let link = Rc::new(Link::new(id, peer));
        self.links.insert(link.clone());
        ShardStats::inc(&self.stats.connections);
        if !adopted {
            self.shared.open_connections.fetch_add(1, Ordering::Relaxed);
            // From the accept rounded up, so the deadline is never early.
            let at = self
                .clock
                .read()
                .0
                .add_ms(self.shared.config.connect_timeout_ms);
            let tick = self.clock.wheel_tick(at);
            let key = self
                .wheel
                .insert(tick, TimerEvent::ConnectDeadline(link.id));
            link.connect_timer.set(Some(key));
            self.pending_connects += 1;
        }
        link
    }

    /// Whether a socket just accepted from `peer` may be served:
    /// --max-pending-connects and --max-connections-per-ip. A refused one
    /// is counted and logged (rate-limited); the caller closes it.
    pub(crate) fn admit(&mut self, peer: std::net::SocketAddr) -> bool {
        let config = &self.shared.config;
        let (gate, counter, why) = if self.pending_connects >= config.max_pending_connects {
            (
                Gate::PendingConnects,
                &self.stats.pending_connects_refused,
                "--max-pending-connects reached: connection closed at accept",
            )
        } else if config.max_connections_per_ip > 0
            && !self
                .shared
                .per_ip
                .admit(peer.ip(), config.max_connections_per_ip)
        {
            (
                Gate::PerIp,
                &self.stats.connects_per_ip_refused,
                "--max-connections-per-ip reached: connection closed at accept",
            )
        } else {
            return true;
        };
        ShardStats::inc(counter);
        let now = self.clock.now();
        if let Some(unlogged) = self.gates.check(gate, now) {
            warn!(shard = self.id.0, %peer, unlogged, "{why}");
        }
        false
    }

    /// The CONNECT deadline of a link is over (CONNECT handled, link
    /// gone, or the deadline fired): it no longer counts as pending.
    fn end_connect_wait(&mut self, link: &Link, fired: bool) {
        if let Some(key) = link.connect_timer.take() {
            if !fired {
                self.wheel.cancel(key);
            }
            self.pending_connects -= 1;
        }
    }

    /// Moves a socket to the shard that owns its client id.
    pub(crate) fn hand_off(&mut self, owner: ShardId, adopt: Adopt) {
        ShardStats::dec(&self.stats.connections);
        self.send_mesh(
            owner,
            Msg::Adopt {
                fd: adopt.fd,
                read: adopt.read,
                peer: adopt.peer,
                transport: adopt.transport,
            },
        );
    }

    /// A connection handed off: forget it here.
    pub(crate) fn forget_link(&mut self, link: &Link) {
        self.links.remove(&link.id);
        self.connect_started.remove(&link.id);
        self.end_connect_wait(link, false);
    }

    /// The shard that owns `client_id` (an empty id stays here: the id
    /// assigned to it is chosen to map here).
    pub(crate) fn owner_of(&self, client_id: &[u8]) -> ShardId {
        if client_id.is_empty() {
            self.id
        } else {
            owner_shard(client_id, self.shared.shards)
        }
    }

    /// Runs a CONNECT against the session table: refusal, a new session, a
    /// resumed one, or a take-over. Returns the link taken over, whose
    /// close the new CONNACK waits for (MQTT-3.1.4-3).
    /// `stamp`: when the CONNECT arrived (rounded up).
    pub(crate) fn on_connect(
        &mut self,
        link: &Rc<Link>,
        connect: Connect,
        stamp: Tick,
    ) -> Connected {
        let version = connect.protocol;
        let v5 = version == ProtocolVersion::V5;
        // A parked CONNECT (password check) counts from its first reading.
        let started = self
            .connect_started
            .remove(&link.id)
            .unwrap_or_else(std::time::Instant::now);
        // CONNACK goes out in the client's own version.
        link.version.set(Some(version));
        // A CONNECT handled again after its password check already passed
        // the checks before it.
        let resumed =
            link.auth.get() != AuthState::Unchecked || link.claim.get() != ClaimState::Unchecked;
        let max = self.shared.config.max_connections;
        if max > 0 && self.shared.open_connections.load(Ordering::Relaxed) > max {
            warn!(max, "--max-connections reached: refusing CONNECT");
            // v3 has no quota code: 0x03 is "server unavailable".
            let code = v3_unavailable_or(v5, ReasonCode::QUOTA_EXCEEDED);
            self.refuse(link, code, "max connections");
            return Connected::Done;
        }
        let mut connect = connect;
        let mut by_certificate = false;
        if let Some(name) = link.cert_name.take() {
            // --use-identity-as-username: the certificate names the user,
            // whatever the CONNECT says.
            match name.0 {
                Some(cn) => {
                    connect.username = Some(Bytes::from(cn.into_string()));
                    by_certificate = true;
                }
                None => {
                    let code = if v5 {
                        ReasonCode::NOT_AUTHORIZED
                    } else {
                        ReasonCode(0x05)
                    };
                    self.refuse(link, code, "no client certificate name");
                    return Connected::Done;
                }
            }
        }
        let now = self.clock.read().1;
        self.now = now;
        if !resumed && !self.connect_bucket.take(now) {
            self.end_connect_wait(link, false);
            ShardStats::inc(&self.stats.connects_rate_limited);
            if let Some(unlogged) = self.gates.check(Gate::ConnectRate, now) {
                warn!(
                    shard = self.id.0,
                    unlogged, "--max-connect-rate reached: refusing CONNECT"
                );
            }
            if v5 {
                self.refuse(link, ReasonCode::CONNECTION_RATE_EXCEEDED, "connect rate");
            } else {
                // v3 has no code for it: closed without a CONNACK.
                ShardStats::inc(&self.stats.connects_refused);
                link.request_close(CloseCause::ProtocolError);
            }
            return Connected::Done;
        }
        match self.authenticate(link, &connect, by_certificate, v5, now) {
            Step::Go => {}
            // The CONNECT deadline stays armed while a verifier works.
            Step::Park => {
                self.connect_started.insert(link.id, started);
                return Connected::Parked;
            }
            Step::Stop => {
                self.end_connect_wait(link, false);
                return Connected::Done;
            }
        }
        self.end_connect_wait(link, false);
        let negotiated = match negotiate(&connect, &self.policy) {
            Ok(n) => n,
            Err(refusal) if refusal.silent => {
                ShardStats::inc(&self.stats.connects_refused);
                debug!(reason = refusal.why, "CONNECT refused without a CONNACK");
                link.request_close(CloseCause::ProtocolError);
                return Connected::Done;
            }
            Err(refusal) => {
                self.refuse(link, refusal.code, refusal.why);
                return Connected::Done;
            }
        };
        let assigned = negotiated.assign_client_id.then(|| self.assign_client_id());
        let client_id = match &assigned {
            Some(id) => id.clone(),
            None => Bytes::copy_from_slice(&connect.client_id),
        };
        tracing::Span::current().record("client_id", tracing::field::debug(&client_id));
        if let Err(denial) = authorize(&connect, &client_id, assigned.is_some(), &self.policy) {
            let counter = match denial {
                Denial::ClientId => &self.stats.client_id_refused,
                _ => &self.stats.acl_will_refused,
            };
            ShardStats::inc(counter);
            let refusal = denial.refusal(v5);
            self.refuse(link, refusal.code, refusal.why);
            return Connected::Done;
        }

        // --cluster-nats: an id not held here is claimed in the cluster's
        // directory first (another node may hold it); an assigned one is
        // this node's by construction.
        if assigned.is_none() && self.shared.cluster.is_some() {
            let user = connect.username.clone();
            match self.claim(link, &client_id, connect.clean_start, user, started) {
                Step::Go => {}
                Step::Park => return Connected::Parked,
                Step::Stop => return Connected::Done,
            }
        }

        let mut out = std::mem::take(&mut self.outbox);
        let mut taken_over = None;
        let sid = match self.table.find(&client_id) {
            Some(sid) => {
                let owner_ok = self.table.get(sid).is_none_or(|e| {
                    e.session
                        .may_take_over(connect.username.as_deref(), &self.policy)
                });
                if !owner_ok {
                    // Before the fight count: a refused stranger does not
                    // count against the owner.
                    ShardStats::inc(&self.stats.takeovers_refused_user);
                    let refusal = Denial::Takeover.refusal(v5);
                    self.outbox = out;
                    self.refuse(link, refusal.code, refusal.why);
                    return Connected::Done;
                }
                let old = self
                    .table
                    .link_of(sid)
                    .and_then(|l| self.links.get(&l))
                    .cloned();
                if old.is_some() && self.fighting(sid, &client_id, now) {
                    ShardStats::inc(&self.stats.takeovers_refused);
                    // v3 has no such code: 0x03 is "server unavailable".
                    let code = v3_unavailable_or(v5, ReasonCode::CONNECTION_RATE_EXCEEDED);
                    self.outbox = out;
                    self.refuse(link, code, "take-over fight");
                    return Connected::Done;
                }
                if let Some(old) = old {
                    ShardStats::inc(&self.stats.takeovers);
                    debug!(client_id = ?client_id, old_peer = %old.peer, "take-over");
                    if let Some(entry) = self.table.get_mut(sid) {
                        entry.session.taken_over(connect.clean_start, &mut out);
                    }
                    self.apply(Some(sid), Some(&old), &mut out);
                    self.table.detach(sid, old.id);
                    old.session.set(None);
                    taken_over = Some(old);
                }
                sid
            }
            None => {
                ShardStats::inc(&self.stats.sessions);
                self.table.insert(Session::new(client_id.clone(), version))
            }
        };
        self.table.attach(sid, link.id);
        link.session.set(Some(sid));
        // The CONNECT is the first packet the keep-alive counts from: its
        // stamp is rounded up, so the first deadline is never early.
        if let Some(entry) = self.table.get_mut(sid) {
            entry.session.connect(
                &connect,
                &negotiated,
                &self.policy,
                assigned.as_ref(),
                stamp,
                &mut out,
            );
        }
        self.apply(Some(sid), Some(link), &mut out);
        self.outbox = out;
        self.cluster_changed(sid);
        if let Some(ms) =
            keepalive_timeout_ms(negotiated.keep_alive_secs, self.policy.keepalive_backoff)
        {
            link.user_timeout_ms
                .set(Some(ms.min(u64::from(u32::MAX)) as u32));
        }
        ShardStats::inc(&self.stats.connects);
        link.counted.set(true);
        ShardStats::inc(self.clients_gauge(Some(version)));
        link.keep_alive
            .set((negotiated.keep_alive_secs, negotiated.keep_alive_source));
        self.stats
            .hist
            .connect
            .observe_us(started.elapsed().as_micros() as u64);
        debug!(
            client_id = ?client_id,
            ?version,
            keep_alive = negotiated.keep_alive_secs,
            "connected"
        );
        self.run_deferred();
        match taken_over {
            Some(old) => Connected::WaitFor(old),
            None => Connected::Done,
        }
    }

    /// The password check of a CONNECT (after --use-identity-as-username
    /// named the user, if it applies): go on, stop (refused here), or park
    /// (a verifier thread checks the hash; the CONNECT is handled again
    /// when its verdict comes).
    fn authenticate(
        &mut self,
        link: &Rc<Link>,
        connect: &Connect,
        by_certificate: bool,
        v5: bool,
        now: Tick,
    ) -> Step {
        let (bad, not_authorized) = if v5 {
            (
                ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                ReasonCode::NOT_AUTHORIZED,
            )
        } else {
            (ReasonCode(0x04), ReasonCode(0x05))
        };
        match link.auth.get() {
            AuthState::Passed => return Step::Go,
            AuthState::Failed => {
                ShardStats::inc(&self.stats.auth_failed);
                self.refuse(link, bad, "bad user name or password");
                return Step::Stop;
            }
            AuthState::Pending => return Step::Park,
            AuthState::Unchecked => {}
        }
        let Some(user) = &connect.username else {
            if self.shared.config.anonymous_allowed() {
                return Step::Go;
            }
            ShardStats::inc(&self.stats.anonymous_refused);
            self.refuse(link, not_authorized, "anonymous");
            return Step::Stop;
        };
        // A verified client certificate is the credential; no password file
        // means any named client may connect.
        let Some(passwords) = self.passwords.as_ref().filter(|_| !by_certificate) else {
            return Step::Go;
        };
        let Some(password) = &connect.password else {
            ShardStats::inc(&self.stats.auth_failed);
            self.refuse(link, bad, "no password");
            return Step::Stop;
        };
        if self.auth_cache.hit(user, password, now) {
            ShardStats::inc(&self.stats.auth_cache_hits);
            ShardStats::inc(&self.stats.auth_ok);
            return Step::Go;
        }
        let (hash, known) = match passwords.entry(user) {
            Some(hash) => (hash.clone(), true),
            None => (passwords.stand_in().clone(), false),
        };
        let job = crate::auth::Job {
            shard: self.id.0,
            link: link.id,
            hash,
            known,
            user: user.clone(),
            password: password.clone(),
        };
        let sent = self
            .auth_jobs
            .as_ref()
            .is_some_and(|jobs| jobs.try_send(job).is_ok());
        if !sent {
            ShardStats::inc(&self.stats.auth_queue_full);
            if let Some(unlogged) = self.gates.check(Gate::AuthQueue, now) {
                warn!(
                    shard = self.id.0,
                    unlogged,
                    "password checks queued beyond {}: refusing CONNECT (raise --auth-threads)",
                    crate::auth::MAX_QUEUED_JOBS
                );
            }
            let code = v3_unavailable_or(v5, ReasonCode::SERVER_UNAVAILABLE);
            self.refuse(link, code, "password checks queued");
            return Step::Stop;
        }
        link.auth.set(AuthState::Pending);
        Step::Park
    }

    /// A verifier's verdict: the parked CONNECT is handled again.
    fn auth_done(&mut self, done: crate::auth::Done) {
        let Some(link) = self.links.get(&done.link).cloned() else {
            return;
        };
        if link.auth.get() != AuthState::Pending {
            return;
        }
        if done.ok {
            ShardStats::inc(&self.stats.auth_ok);
            let secs = self.shared.config.auth_cache_secs;
            if secs > 0 {
                let until = self.now.add_ms(secs.saturating_mul(1000));
                self.auth_cache.remember(done.user, &done.password, until);
            }
            link.auth.set(AuthState::Passed);
        } else {
            link.auth.set(AuthState::Failed);
        }
        self.resumed.push(link.id.slot());
    }

    /// The claim of `client_id` by `link`'s CONNECT (--cluster-nats): go on
    /// (held here already, or granted, with the session another node let
    /// go imported), park until the control thread answers, or stop
    /// (refused: CONNACK 0x89 Server busy, v3 0x03).
    fn claim(
        &mut self,
        link: &Rc<Link>,
        client_id: &Bytes,
        clean_start: bool,
        username: Option<Bytes>,
        started: std::time::Instant,
    ) -> Step {
        let v5 = link.version.get() == Some(ProtocolVersion::V5);
        match link.claim.get() {
            ClaimState::Unchecked if self.table.find(client_id).is_some() => Step::Go,
            ClaimState::Unchecked => {
                let Some(cluster) = self.shared.cluster.as_ref() else {
                    return Step::Go;
                };
                let job = crate::cluster::ClaimJob {
                    shard: self.id.0,
                    link: link.id.raw(),
                    client_id: client_id.clone(),
                    clean_start,
                    username,
                };
                if !cluster.claim(job) {
                    if let Some(unlogged) = self.gates.check(Gate::ClusterClaims, self.now) {
                        warn!(
                            shard = self.id.0,
                            unlogged, "cluster: claims queued beyond the bound: refusing CONNECT"
                        );
                    }
                    let code = v3_unavailable_or(v5, ReasonCode::SERVER_BUSY);
                    self.refuse(link, code, "cluster claims queued");
                    return Step::Stop;
                }
                link.claim.set(ClaimState::Pending);
                self.claiming.insert(client_id.clone(), link.id);
                self.connect_started.insert(link.id, started);
                Step::Park
            }
            ClaimState::Pending => {
                self.connect_started.insert(link.id, started);
                Step::Park
            }
            ClaimState::Granted => {
                if let Some(moved) = self.arrivals.remove(&link.id) {
                    let (id, state) = *moved;
                    self.adopt_moved(id, state);
                }
                Step::Go
            }
            ClaimState::Refused => {
                let code = v3_unavailable_or(v5, ReasonCode::SERVER_BUSY);
                self.refuse(link, code, "client id held by another node");
                Step::Stop
            }
            ClaimState::Denied => {
                // As for a take-over on this node (--takeover-same-user-only).
                ShardStats::inc(&self.stats.takeovers_refused_user);
                let refusal = Denial::Takeover.refusal(v5);
                self.refuse(link, refusal.code, refusal.why);
                Step::Stop
            }
        }
    }

    /// A claim ended: its CONNECT is handled again (refused if another
    /// node took the id meanwhile).
    pub(crate) fn cluster_claimed(
        &mut self,
        raw: u64,
        client_id: Bytes,
        outcome: crate::cluster::Claimed,
    ) {
        let Some(id) = super::link::LinkId::from_raw(raw) else {
            return;
        };
        if self.claiming.get(&client_id) == Some(&id) {
            self.claiming.remove(&client_id);
        }
        let Some(link) = self.links.get(&id).cloned() else {
            return;
        };
        if link.claim.get() == ClaimState::Pending {
            match outcome {
                crate::cluster::Claimed::Granted(moved) => {
                    link.claim.set(ClaimState::Granted);
                    if let Some(moved) = moved {
                        self.arrivals.insert(id, moved);
                    }
                }
                crate::cluster::Claimed::Refused(why) => {
                    debug!(client_id = ?client_id, ?why, "cluster: claim refused");
                    link.claim.set(match why {
                        ringmq_cluster::directory::Refusal::Denied => ClaimState::Denied,
                        _ => ClaimState::Refused,
                    });
                }
            }
        }
        self.resumed.push(id.slot());
    }

    /// Another node takes `client_id` over: a CONNECT claiming it here is
    /// refused; a session held here lets its connection go (DISCONNECT
    /// 0x8E) and ends here, and what lives on is the answer.
    pub(crate) fn cluster_take_over(
        &mut self,
        client_id: Bytes,
        clean_start: bool,
        username: Option<Bytes>,
        reply: tokio::sync::oneshot::Sender<crate::cluster::Released>,
    ) {
        use ringmq_cluster::handover::Reply;
        if let Some(id) = self.claiming.remove(&client_id) {
            if let Some(link) = self.links.get(&id) {
                if link.claim.get() == ClaimState::Pending {
                    // The other node wins: it read this node's claim.
                    link.claim.set(ClaimState::Refused);
                    let _ = reply.send(Reply::HandedOver(None));
                    return;
                }
            }
        }
        let Some(sid) = self.table.find(&client_id) else {
            let _ = reply.send(Reply::NotHeld);
            return;
        };
        let allowed = self
            .table
            .get(sid)
            .is_none_or(|e| e.session.may_take_over(username.as_deref(), &self.policy));
        if !allowed {
            // --takeover-same-user-only: the session stays with its user.
            ShardStats::inc(&self.stats.takeovers_refused_user);
            let _ = reply.send(Reply::Denied);
            return;
        }
        self.now = self.clock.read().1;
        let old = self
            .table
            .link_of(sid)
            .and_then(|l| self.links.get(&l))
            .cloned();
        if let Some(old) = &old {
            self.table.detach(sid, old.id);
            old.session.set(None);
        }
        let mut out = std::mem::take(&mut self.outbox);
        let wall = self.shared.wall;
        let state = self
            .table
            .get_mut(sid)
            .and_then(|e| e.session.hand_over(clean_start, self.now, &wall, &mut out));
        self.handing_over = true;
        self.apply(Some(sid), old.as_ref(), &mut out);
        self.handing_over = false;
        self.outbox = out;
        self.run_deferred();
        debug!(client_id = ?client_id, "cluster: client id let go to another node");
        let _ = reply.send(Reply::HandedOver(state.map(|s| Box::new((client_id, s)))));
    }

    /// Imports a session another node let go (before its CONNECT resumes
    /// it): routes, timers, and its records when persistence is on. A
    /// session held here meanwhile wins.
    pub(crate) fn adopt_moved(&mut self, client_id: Bytes, mut state: ringmq_store::SessionState) {
        if self.table.find(&client_id).is_some() {
            return;
        }
        let now = self.clock.now();
        let wall = self.shared.wall;
        // Connected when its node died: it left now.
        state.left_at_unix_ms.get_or_insert(wall.to_unix(now));
        let mut out = std::mem::take(&mut self.outbox);
        match Session::import(
            client_id.clone(),
            &state,
            &wall,
            &self.policy,
            now,
            &mut out,
        ) {
            Ok(session) => {
                if self.policy.persistence && state.expiry_secs > 0 {
                    let events: Vec<_> = state.events(&client_id).collect();
                    self.record_all(&events);
                }
                let sid = self.table.insert(session);
                ShardStats::inc(&self.stats.sessions);
                self.apply(Some(sid), None, &mut out);
            }
            Err(e) => {
                out.drain().for_each(drop);
                warn!(client_id = ?client_id, error = %e, "cluster: a session from another node left out");
            }
        }
        self.outbox = out;
    }

    /// Counts a take-over of `sid`; true when the id has been taken over
    /// more than --takeover-limit times within the window (two clients
    /// fighting over one id). Logged once per window, not per kick.
    fn fighting(&mut self, sid: SessionId, client_id: &Bytes, now: Tick) -> bool {
        let config = &self.shared.config;
        let (limit, window_ms) = (config.takeover_limit, config.takeover_window_secs * 1000);
        let Some(entry) = self.table.get_mut(sid) else {
            return false;
        };
        if limit == 0 {
            return false;
        }
        if entry.fights == 0 || now.0.saturating_sub(entry.fight_since_ms) >= window_ms {
            entry.fights = 0;
            entry.fight_since_ms = now.0;
        }
        entry.fights = entry.fights.saturating_add(1);
        if entry.fights == limit + 1 {
            warn!(
                shard = self.id.0,
                client_id = ?client_id,
                limit,
                "take-over fight: refusing newcomers for this id until the window ends"
            );
        }
        entry.fights > limit
    }

    /// The `clients_v*` gauge of a protocol version.
    fn clients_gauge(&self, version: Option<ProtocolVersion>) -> &std::sync::atomic::AtomicU64 {
        match version {
            Some(ProtocolVersion::V3_1) => &self.stats.clients_v31,
            Some(ProtocolVersion::V5) => &self.stats.clients_v5,
            _ => &self.stats.clients_v311,
        }
    }

    /// Refuses a CONNECT (CONNACK with `code`) and closes.
    fn refuse(&mut self, link: &Rc<Link>, code: ReasonCode, why: &str) {
        ShardStats::inc(&self.stats.connects_refused);
        debug!(reason = why, code = code.0, "CONNECT refused");
        let mut out = std::mem::take(&mut self.outbox);
        refuse_connect(code, &mut out);
        self.apply(None, Some(link), &mut out);
        self.outbox = out;
    }

    /// Picks a client id for a client that sent none, one this shard owns.
    fn assign_client_id(&mut self) -> Bytes {
        loop {
            self.table.assigned_ids += 1;
            let n = self.table.assigned_ids;
            // In a cluster the node's name makes it unique among nodes.
            let id = match &self.shared.cluster {
                Some(c) => format!("ringmq-{}-{}-{n:x}", c.node_id, self.id.0),
                None => format!("ringmq-{}-{n:x}", self.id.0),
            };
            if owner_shard(id.as_bytes(), self.shared.shards) == self.id
                && self.table.find(id.as_bytes()).is_none()
            {
                return Bytes::from(id);
            }
        }
    }

    /// One packet after CONNECT, stamped `now`.
    pub(crate) fn on_packet(&mut self, link: &Rc<Link>, packet: Packet, now: Tick) {
        let Some(sid) = link.session.get() else {
            return;
        };
        if let Packet::Publish(p) = &packet {
            ShardStats::inc(&self.stats.publishes_in);
            match p.qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => ShardStats::inc(&self.stats.publishes_in_qos1),
                QoS::ExactlyOnce => ShardStats::inc(&self.stats.publishes_in_qos2),
            }
        }
        let mut out = std::mem::take(&mut self.outbox);
        if let Some(entry) = self.table.get_mut(sid) {
            entry
                .session
                .handle_packet(packet, &self.policy, now, &mut out);
        }
        self.apply(Some(sid), Some(link), &mut out);
        self.outbox = out;
        self.run_deferred();
    }

    /// Bytes that are not a valid packet: count, tell a v5 client why
    /// (or answer an unknown protocol level with CONNACK 0x01), close.
    pub(crate) fn on_decode_error(&mut self, link: &Rc<Link>, error: &DecodeError) {
        self.on_bad_bytes(link, error.reason_code(), error);
    }

    /// Like [`Core::on_decode_error`], for a reason code and any cause.
    pub(crate) fn on_bad_bytes(
        &mut self,
        link: &Rc<Link>,
        code: ReasonCode,
        error: &dyn std::fmt::Display,
    ) {
        ShardStats::inc(&self.stats.protocol_errors);
        debug!(%error, "bad packet");
        let mut out = std::mem::take(&mut self.outbox);
        let session = link.session.get();
        if let Some(entry) = session.and_then(|sid| self.table.get_mut(sid)) {
            entry.session.malformed(code, &mut out);
        } else if code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION {
            // MQTT-3.1.2-2: CONNACK 0x01 in the 3.1.1 format, the one every
            // client can read.
            link.version.set(Some(ProtocolVersion::V3_1_1));
            refuse_connect(ReasonCode(V3_UNACCEPTABLE_PROTOCOL), &mut out);
        }
        // Whatever the session decided, these bytes end the connection.
        out.push(Action::Close(CloseCause::ProtocolError));
        self.apply(session, Some(link), &mut out);
        self.outbox = out;
    }

    /// The first packet is not CONNECT (MQTT-3.1.0-1): count and close.
    pub(crate) fn on_not_connect(&mut self, link: &Rc<Link>) {
        ShardStats::inc(&self.stats.protocol_errors);
        debug!("first packet is not CONNECT");
        link.request_close(CloseCause::ProtocolError);
    }

    /// The connection's socket is closed: its session learns why (will,
    /// expiry), unless another connection has taken it over.
    pub(crate) fn on_closed(&mut self, link: &Rc<Link>, cause: CloseCause) {
        self.forget_link(link);
        ShardStats::dec(&self.stats.connections);
        let stats = &self.stats;
        ShardStats::inc(match cause {
            CloseCause::ClientDisconnect(_) => &stats.disconnects_client,
            CloseCause::KeepAliveTimeout => &stats.disconnects_keepalive,
            CloseCause::NetworkError => &stats.disconnects_network,
            CloseCause::ProtocolError => &stats.disconnects_protocol,
            CloseCause::TakenOver => &stats.disconnects_takeover,
            CloseCause::ServerShutdown => &stats.disconnects_shutdown,
            CloseCause::Administrative => &stats.disconnects_admin,
        });
        if link.counted.replace(false) {
            ShardStats::dec(self.clients_gauge(link.version.get()));
        }
        self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        if self.shared.config.max_connections_per_ip > 0 {
            self.shared.per_ip.release(link.peer.addr().ip());
        }
        let Some(sid) = link.session.take() else {
            return;
        };
        if !self.table.detach(sid, link.id) {
            return;
        }
        let now = self.clock.read().1;
        self.now = now;
        let mut out = std::mem::take(&mut self.outbox);
        if let Some(entry) = self.table.get_mut(sid) {
            entry.session.connection_lost(cause, now, &mut out);
        }
        self.cluster_changed(sid);
        self.apply(Some(sid), None, &mut out);
        let max_absent = self.shared.config.max_sessions.div_ceil(self.shared.shards);
        if self.table.get(sid).is_some() && self.table.absent() > max_absent {
            // --max-sessions: this shard keeps no more absent sessions; this
            // one ends now (its will, if due, is published as at expiry).
            ShardStats::inc(&self.stats.sessions_discarded);
            if let Some(unlogged) = self.gates.check(Gate::Sessions, now) {
                warn!(
                    shard = self.id.0,
                    unlogged, "--max-sessions reached: session of a leaving client ended"
                );
            }
            if let Some(entry) = self.table.get_mut(sid) {
                entry
                    .session
                    .handle_timer(Timer::SessionExpiry, now, &mut out);
            }
            self.apply(Some(sid), None, &mut out);
        }
        self.outbox = out;
        self.run_deferred();
    }

    /// Advances the wheel to now and handles what fired. Returns the next
    /// deadline.
    pub(crate) fn fire_timers(&mut self) -> Option<ringmq_wheel::Tick> {
        let mut fired = Vec::new();
        self.wheel.advance(self.clock.wheel_now(), &mut fired);
        let now = self.clock.read().1;
        self.now = now;
        for (_, event) in fired {
            match event {
                TimerEvent::ConnectDeadline(id) => {
                    let Some(link) = self.links.get(&id).cloned() else {
                        continue;
                    };
                    self.end_connect_wait(&link, true);
                    if link.session.get().is_none() && link.close_requested().is_none() {
                        ShardStats::inc(&self.stats.connect_timeouts);
                        debug!(peer = %link.peer, "no CONNECT within --connect-timeout-ms");
                        link.request_close(CloseCause::NetworkError);
                    }
                }
                TimerEvent::Session(sid, timer) => {
                    // The entry has fired: it is no longer armed. If the
                    // session arms or cancels this timer before the
                    // backlog gets to it, the fire is stale and skipped.
                    let Some(gen) = self.table.fired(sid, timer) else {
                        continue;
                    };
                    if !self.due.is_empty() {
                        ShardStats::inc(&self.stats.timers_deferred);
                    }
                    self.due.push_back((sid, timer, now, gen));
                }
                TimerEvent::Sys => self.publish_sys(),
            }
        }
        self.run_due(now);
        self.wheel.next_deadline()
    }

    /// Handles fired session timers in deadline order, as fast as the
    /// --will-rate bucket allows; the rest wait for the next turn.
    fn run_due(&mut self, now: Tick) {
        let tick_ms = self.shared.config.keepalive_tick_ms;
        let mut deferred = 0u64;
        while let Some(&(sid, timer, due, gen)) = self.due.front() {
            if !self.table.timer_current(sid, timer, gen) {
                // Re-armed or cancelled meanwhile (a reconnection cancels
                // a will still waiting here): nothing to do, no token.
                self.due.pop_front();
                continue;
            }
            if !self.timer_bucket.take(now) {
                deferred = self.due.len() as u64;
                break;
            }
            self.due.pop_front();
            self.on_session_timer(sid, timer, now);
            // Lateness of the timer itself: a keep-alive expiry's will is
            // published when its close completes, later in this turn.
            let late_ms = now.0.saturating_sub(due.0);
            if late_ms > tick_ms {
                ShardStats::inc(&self.stats.timers_late);
                ShardStats::add(&self.stats.timer_lateness_ms, late_ms);
            }
            self.run_deferred();
        }
        if deferred > 0 {
            if let Some(unlogged) = self.gates.check(Gate::WillRate, now) {
                warn!(
                    shard = self.id.0,
                    waiting = deferred,
                    unlogged,
                    "--will-rate reached: expiries and wills wait their turn"
                );
            }
        }
        self.run_deferred();
    }

    /// Copies this shard's gauges (absent sessions, subscriptions,
    /// retained messages, inbox depth) into its counters, so readers on
    /// other threads see them without asking. The engine calls it at the
    /// end of every loop turn, before it may sleep: what a scrape reads is
    /// never older than the shard's last piece of work.
    pub(crate) fn refresh_gauges(&mut self) {
        let stats = &self.stats;
        ShardStats::set(&stats.sessions_absent, self.table.absent() as u64);
        ShardStats::set(&stats.subscriptions, self.routes.local_len() as u64);
        ShardStats::set(&stats.retained_messages, self.retained.len() as u64);
        ShardStats::set(&stats.inbox_depth, self.inbox.depth() as u64);
    }

    /// How long until the timer backlog may go on (None: no backlog).
    pub(crate) fn due_wait_ms(&mut self) -> Option<u64> {
        if self.due.is_empty() {
            return None;
        }
        let now = self.clock.read().1;
        Some(self.timer_bucket.wait_ms(now))
    }

    fn on_session_timer(&mut self, sid: SessionId, timer: ringmq_session::Timer, now: Tick) {
        let link = self
            .table
            .link_of(sid)
            .and_then(|l| self.links.get(&l))
            .cloned();
        let mut out = std::mem::take(&mut self.outbox);
        let mut deadline = None;
        if let Some(entry) = self.table.get_mut(sid) {
            deadline = entry.session.keepalive_deadline();
            entry.session.handle_timer(timer, now, &mut out);
        }
        let expired = out
            .actions()
            .iter()
            .any(|a| matches!(a, Action::Close(CloseCause::KeepAliveTimeout)));
        if let Some(deadline) = deadline.filter(|_| expired) {
            // How late after the keep-alive deadline the close happens
            // (the deadline is a tick: ms since the shards' epoch).
            let since_epoch = self.shared.epoch.elapsed().as_micros() as u64;
            let late_us = since_epoch.saturating_sub(deadline.0.saturating_mul(1000));
            self.stats.hist.keepalive_lateness.observe_us(late_us);
        }
        self.apply(Some(sid), link.as_ref(), &mut out);
        self.outbox = out;
    }

    /// Handles every message waiting in the inbox. Retained queries are
    /// answered only once every channel has been seen empty, so a store
    /// that was in any channel before the query is applied first.
    pub(crate) fn drain_inbox(&mut self) {
        if self.inbox.is_empty() {
            return;
        }
        let mut queries = Vec::new();
        let mut wills = Vec::new();
        while let Some((from, msg)) = self.inbox.try_recv_from() {
            match msg {
                Msg::Publish(routed) => {
                    self.handle_routed(routed);
                    if let Some(d) = self.durability.as_mut() {
                        d.received[from] += 1;
                    }
                }
                Msg::Durable(upto) => self.durable(from, upto),
                Msg::ClusterPublish(publish, group) => self.route_from_cluster(*publish, group),
                Msg::ClusterStored(token) => self.cluster_stored(token),
                Msg::ClusterClaimed(claimed) => {
                    let (link, client_id, outcome) = *claimed;
                    self.cluster_claimed(link, client_id, outcome);
                }
                Msg::ClusterAdopt(adopt) => {
                    let (client_id, state) = *adopt;
                    self.adopt_moved(client_id, state);
                    self.run_deferred();
                }
                Msg::ClusterTakeOver(take) => {
                    let (client_id, clean_start, username, reply) = *take;
                    self.cluster_take_over(client_id, clean_start, username, reply);
                }
                Msg::ClusterRetained(publish) => self.store_from_cluster(*publish),
                Msg::Route(change) => self.routes.apply_remote(ShardId(from), &change),
                Msg::RetainedQuery {
                    filter,
                    reply_to,
                    session,
                } => queries.push((filter, reply_to, session)),
                Msg::RetainedReply {
                    session,
                    filter,
                    messages,
                } => self.deliver_retained(session, &filter, messages),
                Msg::Adopt {
                    fd,
                    read,
                    peer,
                    transport,
                } => {
                    ShardStats::inc(&self.stats.handoffs);
                    // The engine starts it in this same turn.
                    self.adopts.push(Adopt {
                        fd,
                        read,
                        peer,
                        transport,
                    });
                }
                Msg::TlsReload(material) => {
                    self.tls = Some(crate::transport::tls::ShardTls::new(&material));
                }
                Msg::Passwords(file) => {
                    self.passwords = Some(file);
                    self.auth_cache.clear();
                }
                Msg::Acl(acl) => self.reauthorize_all(acl),
                Msg::Admin(request) => self.admin(*request),
                Msg::Policy(policy) => {
                    let acl = self.policy.acl.take();
                    let persistence = self.policy.persistence;
                    self.policy = *policy;
                    self.policy.acl = acl;
                    // Set at start: the store's files are this run's.
                    self.policy.persistence = persistence;
                }
                Msg::StoredWills(list) => wills.extend(list),
                Msg::AuthDone(done) => self.auth_done(*done),
                Msg::Shutdown => self.begin_shutdown(),
            }
            self.run_deferred();
        }
        for (filter, reply_to, session) in queries {
            self.answer_retained_query(filter, reply_to, session);
        }
        if !wills.is_empty() {
            // After every channel was seen empty: the route changes the
            // other shards made at start are known by now.
            self.publish_stored_wills(wills);
        }
    }

    /// A reloaded ACL: every session is decided again under it (its
    /// cached decisions forgotten, subscriptions no longer allowed
    /// removed, a will no longer writable dropped). A reload is rare; this
    /// walks the whole table once.
    fn reauthorize_all(&mut self, acl: Arc<ringmq_auth::acl::Acl>) {
        self.policy.acl = Some(acl);
        let sessions: Vec<SessionId> = self.table.ids().collect();
        let mut out = std::mem::take(&mut self.outbox);
        for sid in sessions {
            let link = self
                .table
                .link_of(sid)
                .and_then(|l| self.links.get(&l))
                .cloned();
            if let Some(entry) = self.table.get_mut(sid) {
                entry.session.reauthorize(&self.policy, &mut out);
            }
            self.apply(Some(sid), link.as_ref(), &mut out);
        }
        self.outbox = out;
    }

    /// Stops accepting and sends every client away (v5: DISCONNECT 0x8B).
    pub(crate) fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        tracing::info!(shard = self.id.0, "shutting down: disconnecting clients");
        let connected: Vec<(SessionId, LinkId)> = self.table.connected().collect();
        let mut out = std::mem::take(&mut self.outbox);
        for (sid, link_id) in connected {
            let link = self.links.get(&link_id).cloned();
            if let Some(entry) = self.table.get_mut(sid) {
                entry.session.shutdown(&mut out);
            }
            self.apply(Some(sid), link.as_ref(), &mut out);
        }
        self.outbox = out;
        // --cluster-nats: every persistent session's copy is written as it
        // stands (those away got queued messages since they left).
        if self.shared.cluster.is_some() {
            let ids: Vec<SessionId> = self.table.ids().collect();
            self.cluster_dirty.extend(ids);
        }
        // Connections without a session yet.
        for link in self.links.values() {
            link.request_close(CloseCause::ServerShutdown);
        }
    }
}

/// What became of a CONNECT.
pub(crate) enum Connected {
    /// Handled: connected, or refused (the refusal is queued).
    Done,
    /// A take-over: everything after this CONNECT waits for the old
    /// link's close (MQTT-3.1.4-3).
    WaitFor(Rc<Link>),
    /// Its password is being checked off the shard: the CONNECT is handled
    /// again when the verdict comes.
    Parked,
}

/// The password check's answer to `on_connect`.
enum Step {
    Go,
    Stop,
    Park,
}

/// `code` for a v5 client; for v3.1.1, which has no such code, 0x03
/// (Server unavailable).
fn v3_unavailable_or(v5: bool, code: ReasonCode) -> ReasonCode {
    if v5 {
        code
    } else {
        ReasonCode(0x03)
    }
}
