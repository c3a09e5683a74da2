"""One virtual router's state machine: RFC 5798 §6.4 with keepalived's behaviour.

Sans-I/O: every input carries ``now`` (seconds on the caller's clock) and returns the actions
to perform, in order. The router never reads a clock; its timers are deadlines that the driver
reads from :meth:`Router.next_deadline` and hands back through :meth:`Router.handle_timer`.

Sections follow the RFC: §6.4.1 Initialize, §6.4.2 Backup, §6.4.3 Master. Where keepalived
differs from the RFC we follow keepalived and say so (docs/keepalived-differences.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import attrs

from vrrpkit.core.actions import (
    Action,
    AddVips,
    AnnounceVips,
    PacketDropped,
    RemoveVips,
    SendAdvertisement,
    SplitBrain,
    StateChanged,
)
from vrrpkit.core.addresses import Address, multicast_group
from vrrpkit.core.config import AUTH_PASS, RouterConfig
from vrrpkit.core.counters import Counters
from vrrpkit.core.errors import ConfigError, VrrpError
from vrrpkit.core.packet import (
    Advertisement,
    ChecksumError,
    ChecksumMode,
    PacketError,
    PacketLengthError,
)
from vrrpkit.core.states import State
from vrrpkit.core.timers import master_down_interval, skew_time
from vrrpkit.core.tracking import (
    FallRise,
    effective_priority,
    tracker_contribution,
    tracker_faults,
)
from vrrpkit.core.transitions import Cause, is_allowed

if TYPE_CHECKING:
    from vrrpkit.core.group import SyncGroup

__all__ = [
    "INTERFACE_FAULT",
    "NO_SOURCE_FAULT",
    "InboundPacket",
    "RepeatedAdvert",
    "Router",
    "RouterError",
]

#: The fault reason reported while the router's own interface is down.
INTERFACE_FAULT = "interface"
#: The fault of a router whose source address is gone from its interface (keepalived's
#: NO_SOURCE_IP): it can send no advert, so it must not hold the VIPs either.
NO_SOURCE_FAULT = "source_address"


class RouterError(VrrpError):
    """A router input was used out of order (for example ``start`` twice)."""


@attrs.frozen
class RepeatedAdvert:
    """The advert a steady MASTER sends at ``due`` and every ``interval`` after it."""

    action: SendAdvertisement
    due: float
    interval: float


class InboundPacket(Protocol):
    """A received VRRP message as :meth:`Router.receive_packets` reads it.

    ``data`` is the IP payload, ``ttl`` the IPv4 TTL or IPv6 hop limit, ``timestamp`` when it
    arrived on the caller's clock (None if unknown). The transports' ``ReceivedPacket`` is one.
    """

    @property
    def data(self) -> bytes: ...
    @property
    def src(self) -> Address: ...
    @property
    def dst(self) -> Address | None: ...
    @property
    def ttl(self) -> int: ...
    @property
    def timestamp(self) -> float | None: ...


class Router:
    """The state machine of one virtual router (one VRID on one interface).

    Inputs: :meth:`start`, :meth:`receive_packets` / :meth:`receive_packet` /
    :meth:`receive`, :meth:`handle_timer`, :meth:`tracker_result`,
    :meth:`interface_changed`, :meth:`shutdown`. Each returns the list of actions to perform
    in order. Remote garbage is counted, never raised.
    """

    def __init__(self, config: RouterConfig) -> None:
        if not isinstance(config, RouterConfig):
            raise ConfigError(f"Router needs a RouterConfig, got {config!r}")
        self.config = config
        self._group: SyncGroup | None = None
        self._auth = config.auth_data.ljust(8, b"\0") if config.version == 2 else b""
        self._group_addr = multicast_group(config.address)
        self._address_int = int(config.address)
        self.reset()

    def update_config(self, config: RouterConfig) -> None:
        """Replace the configuration of a router that is not running (INIT or STOPPED).

        Only the source address can change while it runs: :meth:`change_address`.
        """
        if self._state is not State.INIT and self._state is not State.STOPPED:
            raise RouterError(f"{self.name}: configuration can change only while not running")
        if config.name != self.config.name or config.trackers != self.config.trackers:
            raise RouterError(f"{self.name}: name and trackers cannot change")
        self.config = config
        self._auth = config.auth_data.ljust(8, b"\0") if config.version == 2 else b""
        self._group_addr = multicast_group(config.address)
        self._address_int = int(config.address)
        self._adverts.clear()
        self._matching_addresses: tuple[Address, ...] | None = None
        self._checked: tuple[Advertisement, Address, Address | None, int] | None = None
        self._steady: tuple[bytes, Address, Address | None, int, int, int] | None = None
        self._master_adver_int = config.interval
        self._mdi = -1.0
        self._effective = self._compute_priority()

    def reset(self) -> None:
        """Forget everything but the configuration, as a freshly started process would.

        Drivers call it to model a crash and restart; it returns no actions (a crashed process
        removes nothing).
        """
        cfg = self.config
        self._state = State.INIT
        self._wantstate = State.INIT
        self._counters = Counters()
        self._trackers = {t.name: t for t in cfg.trackers}
        self._tracks = {t.name: FallRise.initial(t) for t in cfg.trackers}
        self._interface_up = True
        self._source_present = True
        self._group_fault = False
        self._effective = self._compute_priority()
        self._master_adver_int = cfg.interval
        self._mdi = -1.0
        self._master_address: Address | None = None
        self._master_priority: int | None = None
        self._preempt_until: float | None = None
        self._takeover_cause = Cause.MASTER_DOWN
        self._protocol_deadline: float | None = None
        self._last_decoded: tuple[bytes, Address, Address, ChecksumMode, Advertisement] | None = (
            None
        )
        self._garp_deadline: float | None = None
        self._refresh_deadline: float | None = None
        self._adverts: dict[int, SendAdvertisement] = {}
        self._matching_addresses = None
        self._checked = None
        self._heard: Advertisement | None = None
        self._steady = None
        # In FAULT only for trackers awaited at startup, and not announced (STARTUP_AWAITING).
        self._fault_unannounced = False
        self._outbox: list[Action] = []

    def change_address(self, address: Address | str) -> None:
        """Take ``address`` as the router's own source address, in any state.

        For a runtime whose interface came back with another primary address (or IPv6
        link-local): adverts and the tie-break use it from now on. ConfigError if it is not
        of the family of the virtual addresses.
        """
        old = self.config.address
        config = attrs.evolve(self.config, address=address)
        if config.address.version != old.version:
            raise ConfigError(f"{self.name}: {config.address} is not of the family of {old}")
        self.config = config
        self._group_addr = multicast_group(config.address)
        self._address_int = int(config.address)
        if self._master_address == old:
            self._master_address = config.address
        # Caches of checks made against the old configuration.
        self._checked = None
        self._steady = None

    # -- read-only views -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The router's (instance's) name."""
        return self.config.name

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def wantstate(self) -> State:
        """The state this router would be in if its sync group did not hold it back."""
        return self._wantstate

    @property
    def effective_priority(self) -> int:
        """Base priority plus tracker weights, clamped to 1..254 (255 for the owner)."""
        return self._effective

    @property
    def counters(self) -> Counters:
        """A copy of the receive/transmit counters."""
        return Counters(**self._counters.as_dict())

    @property
    def master_address(self) -> Address | None:
        """The address of the current master as last heard (ours while MASTER)."""
        return self._master_address

    @property
    def master_priority(self) -> int | None:
        """The priority of the current master as last heard."""
        return self._master_priority

    @property
    def master_adver_interval(self) -> float:
        """Master_Adver_Interval: learned from the master's adverts in v3, else ours."""
        return self._master_adver_int

    @property
    def faults(self) -> frozenset[str]:
        """Why the router is (or would be) in FAULT: tracker names, ``"interface"`` and
        ``"source_address"``."""
        reasons = {
            name for name, tr in self._trackers.items() if tracker_faults(tr, self._tracks[name].up)
        }
        if not self._interface_up:
            reasons.add(INTERFACE_FAULT)
        if not self._source_present:
            reasons.add(NO_SOURCE_FAULT)
        return frozenset(reasons)

    @property
    def tracker_states(self) -> dict[str, bool | None]:
        """Each tracker's current verdict: True OK, False failing, None no result yet."""
        return {name: fr.up for name, fr in self._tracks.items()}

    def tracker_contributions(self) -> dict[str, int]:
        """Priority points each tracker currently adds (0 for weight-0 trackers)."""
        return {
            name: tracker_contribution(tr, self._tracks[name].up)
            for name, tr in self._trackers.items()
        }

    def next_deadline(self, *, adverts: bool = True) -> float | None:
        """The earliest time at which :meth:`handle_timer` has work to do, or None.

        ``adverts=False`` leaves a MASTER's next advert out: the deadline of everything else
        (for a runtime that has the repeats of :meth:`repeat_advert` sent on their own).
        """
        best = self._protocol_deadline
        if not adverts and self._state is State.MASTER:
            best = None
        if self._garp_deadline is None and self._refresh_deadline is None:
            return best  # always so for a backup
        for deadline in (self._garp_deadline, self._refresh_deadline):
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best

    def repeat_down_interval(self) -> float | None:
        """How far each repeat of the current master's advert pushes a BACKUP's down timer.

        Master_Down_Interval while every repeat of the master's last advert would be
        accepted and restart the timer (its priority is at least ours, or preemption is
        off); None otherwise: not BACKUP, a resignation is being waited out, or the master's
        adverts are lower and only a preemption delay keeps accepting them. A runtime may
        let the kernel time this silence while it holds (see RawAdvertSocket.watch_silence).
        """
        if self._state is not State.BACKUP or self._takeover_cause is not Cause.MASTER_DOWN:
            return None
        priority = self._master_priority
        if priority is None or priority == 0:
            return None
        cfg = self.config
        if priority >= self._effective or (not cfg.preempt and not cfg.is_owner):
            return self._master_down()
        return None

    def repeat_advert(self) -> RepeatedAdvert | None:
        """The advert a MASTER sends at its next deadline and every interval after, as long
        as no input comes; None unless MASTER.

        A runtime may have a transport send these repeats on their deadlines (the kernel's
        timers, see TimedSends) instead of calling :meth:`handle_timer` for each, provided it
        reports them with :meth:`adverts_repeated` before handing the router anything else.
        """
        deadline = self._protocol_deadline
        if self._state is not State.MASTER or deadline is None:
            return None
        return RepeatedAdvert(self._advert(self._effective), deadline, self.config.interval)

    def adverts_repeated(self, count: int, next_due: float | None = None) -> None:
        """Take ``count`` repeats of :meth:`repeat_advert`'s advert as sent on its deadlines;
        or, given ``next_due``, as sent an interval apart with the next one due then (a
        sender that timed each from the one before, as :meth:`handle_timer` does)."""
        deadline = self._protocol_deadline
        if count <= 0 and next_due is None:
            return
        if self._state is not State.MASTER or deadline is None:
            raise RouterError(f"{self.name}: adverts_repeated() while {self._state}")
        self._counters.advert_sent += max(0, count)
        if next_due is not None:
            self._protocol_deadline = next_due
        else:
            self._protocol_deadline = deadline + count * self.config.interval

    def take_actions(self) -> list[Action]:
        """Drain actions queued for this router by its sync group on another member's input."""
        return self._drain()

    # -- §6.4.1 Initialize -----------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Start the router: clean stale VIPs, then BACKUP, MASTER (owner) or FAULT."""
        if self._state not in (State.INIT, State.STOPPED):
            raise RouterError(f"{self.name}: start() while {self._state}")
        # A fresh start assumes its source address is there: a run's first failed advert
        # says otherwise (see source_changed).
        self._source_present = True
        if self.config.vips:
            # keepalived removes addresses a crashed predecessor left behind (vrrp_init_state).
            self._emit(RemoveVips(self.name, self.config.vips))
        if self.faults:
            awaiting = self._only_awaiting_trackers()
            self._set_state(
                State.FAULT, Cause.STARTUP_AWAITING if awaiting else Cause.STARTUP_FAULT
            )
            self._fault_unannounced = awaiting
        elif self._group is not None and self._group.holds_in_fault(self):
            # keepalived starts a member in its group's state (vrrp_init_state): not BACKUP
            # for a moment, with its notify, before the group pulls it into FAULT.
            self._group_fault = True
            self._wantstate = State.FAULT
            self._set_state(State.FAULT, Cause.GROUP_FAULT)
        elif self.config.is_owner:
            self._try_master(now, Cause.STARTUP_OWNER)
        else:
            self._enter_backup(now, Cause.STARTUP)
        if self._group is not None:
            self._group.member_started(self, now)
        return self._drain()

    # -- receiving -------------------------------------------------------------------------

    def receive_packets(
        self, packets: Iterable[InboundPacket], *, now: float, since: float | None = None
    ) -> list[Action]:
        """Process packets received in this order, up to ``now``, as if each came on its own.

        A packet's ``timestamp`` is taken as its arrival time when it lies within
        (``since``, ``now``]; otherwise (None, ``since`` None, or outside: a clock step) it
        arrived ``now``. A timer that ran out before a packet arrived is handled before that
        packet, so a batch read late gives the actions it would have given read at once.
        Packets of another VRID (a socket shared by several) are skipped without counting.
        A packet with a ``repeats`` attribute above 1 stands for that many identical ones
        received up to its ``timestamp`` (a transport's kernel counted them): it is handled
        once, as the last of them, and counted as received that many times if accepted. A
        packet whose ``timed`` attribute is true comes with the transport's word that no gap
        before it reached the down interval (the kernel timed it): no timer is taken to have
        run out before it.
        """
        actions: list[Action] = []
        vrid = self.config.vrid
        receive = self.receive_packet
        for packet in packets:
            data = packet.data
            if len(data) > 1 and data[1] != vrid:
                continue
            arrived = now
            if since is not None:
                stamp = packet.timestamp
                if stamp is not None and since < stamp <= now:
                    arrived = stamp
                    due = self.next_deadline()
                    if due is not None and due <= arrived and not getattr(packet, "timed", False):
                        actions += self.handle_timer(due)
            repeats = getattr(packet, "repeats", 1)
            before = self._counters.advert_rcvd if repeats > 1 else 0
            done = receive(data, src=packet.src, dst=packet.dst, ttl=packet.ttl, now=arrived)
            if repeats > 1 and self._counters.advert_rcvd > before:
                self._counters.advert_rcvd += repeats - 1
            if done:
                actions += done
        return actions

    def receive_packet(
        self, data: bytes, *, src: Address, dst: Address | None, ttl: int, now: float
    ) -> list[Action]:
        """Decode and process one received VRRP message (the IP payload)."""
        steady = self._steady
        if (
            steady is not None
            and steady[0] == data
            and steady[1] is src
            and steady[2] is dst
            and steady[3] == ttl
            and steady[4] == self._effective
            and self._state is State.BACKUP
            and self._mdi >= 0
        ):
            # The advert a backup hears every interval from its master: byte for byte what
            # this method last accepted from the same sender under the same priority (any
            # other accepted advert forgets it). Do what _accept and _backup_receive did then,
            # without decoding or checking again.
            self._counters.advert_rcvd += 1
            self._preempt_until = None
            self._protocol_deadline = now + self._mdi
            self._takeover_cause = Cause.MASTER_DOWN
            self._master_address = src
            self._master_priority = steady[5]
            self._wantstate = State.BACKUP
            return self._drain()
        self._heard = None
        state = self._state
        if state is not State.BACKUP and state is not State.MASTER:
            return []  # keepalived ignores packets in INIT and FAULT
        cfg = self.config
        to = dst if dst is not None else self._group_addr
        checksum = cfg.checksum
        if ttl != 255 and not cfg.unicast_peers and len(data) > 1 and data[1] == cfg.vrid:
            # keepalived checks the length, then the TTL, then the rest (vrrp_check_packet):
            # a packet of the right length counts as a TTL error whatever else is wrong.
            try:
                Advertisement.decode(data, src=src, dst=to, verify_checksum=False)
            except PacketLengthError as error:
                return self._drop(src, error.counter, str(error))
            except PacketError:
                pass
            return self._drop(src, "ip_ttl_err", f"TTL {ttl} is not 255")
        last = self._last_decoded
        if (
            last is not None
            and last[0] == data
            # The transports hand out one address object per peer: identity settles it
            # without ipaddress's (Python-level) __eq__.
            and (last[1] is src or last[1] == src)
            and (last[2] is to or last[2] == to)
            and last[3] is checksum
        ):
            # A master sends the same bytes every interval: decoding is a pure function of
            # these inputs, so the previous result stands.
            adv = last[4]
        else:
            try:
                adv = Advertisement.decode(data, src=src, dst=to, checksum=checksum)
            except ChecksumError as error:
                # keepalived checks the version and v2 authentication first.
                wrong = self._header_error_unverified(data, src, to, ttl)
                if wrong is not None:
                    return self._drop(src, *wrong)
                return self._drop(src, error.counter, str(error))
            except PacketError as error:
                return self._drop(src, error.counter, str(error))
            self._last_decoded = (data, src, to, checksum, adv)
        checked = self._checked
        if (
            checked is not None
            and checked[0] is adv
            and checked[1] is src
            and checked[2] is dst
            and checked[3] == ttl
        ):
            # The header checks are a pure function of these inputs and the configuration,
            # and passed for them last time.
            actions = self._accept(adv, src, now)
        else:
            actions = self.receive(adv, src=src, dst=dst, ttl=ttl, now=now)
        if self._heard is adv and not actions:
            # A backup accepted it from its master as it is: the same bytes from the same
            # sender take the short path at the top from now on.
            self._steady = (data, src, dst, ttl, self._effective, adv.priority)
        return actions

    def receive(
        self,
        adv: Advertisement,
        *,
        src: Address,
        dst: Address | None = None,
        ttl: int = 255,
        now: float,
    ) -> list[Action]:
        """Process one decoded advertisement (checks of keepalived's vrrp_check_packet)."""
        state = self._state
        if state is not State.BACKUP and state is not State.MASTER:
            return []
        cfg = self.config
        if adv.vrid != cfg.vrid:
            return self._drop(src, "vrid_err", f"VRID {adv.vrid} is not ours ({cfg.vrid})")
        unicast = bool(cfg.unicast_peers)
        wrong = self._header_error(adv, ttl)
        if wrong is not None:
            return self._drop(src, *wrong)
        if dst is not None and (
            (dst == self._group_addr or dst.is_multicast)
            if unicast
            else (dst != self._group_addr and not dst.is_multicast)
        ):
            return self._drop(src, "addr_list_err", f"destination {dst} does not match the mode")
        self._checked = (adv, src, dst, ttl)
        return self._accept(adv, src, now)

    def _header_error(self, adv: Advertisement, ttl: int) -> tuple[str, str] | None:
        """The counter and reason of the first header check ``adv`` fails, in keepalived's
        order (TTL, version, v2 auth type, password and interval), or None."""
        cfg = self.config
        if ttl != 255 and not cfg.unicast_peers:
            # RFC 5798 §7.1: only a neighbour on the link can send with TTL 255.
            return "ip_ttl_err", f"TTL {ttl} is not 255"
        if adv.version != cfg.version:
            return "vers_err", f"version {adv.version} is not {cfg.version}"
        if cfg.version == 2:
            if adv.auth_type != cfg.auth_type:
                return "authtype_mismatch", f"auth type {adv.auth_type} is not {cfg.auth_type}"
            # The v2 password crosses the wire in clear text: a constant-time comparison
            # would protect nothing (keepalived uses memcmp).
            if cfg.auth_type == AUTH_PASS and adv.auth_data != self._auth:
                return "auth_failure", "wrong password"
            if adv.interval != cfg.interval:
                # keepalived drops these without counting (advert_interval_err stays 0); we count.
                return "advert_interval_err", f"interval {adv.interval} s is not {cfg.interval} s"
        return None

    def _header_error_unverified(
        self, data: bytes, src: Address, dst: Address, ttl: int
    ) -> tuple[str, str] | None:
        """What _header_error says of a message whose checksum failed (None: nothing)."""
        try:
            adv = Advertisement.decode(data, src=src, dst=dst, verify_checksum=False)
        except PacketError:
            return None
        if adv.vrid != self.config.vrid:
            return "vrid_err", f"VRID {adv.vrid} is not ours ({self.config.vrid})"
        return self._header_error(adv, ttl)

    def _accept(self, adv: Advertisement, src: Address, now: float) -> list[Action]:
        """Count and act on an advert whose header passed the checks."""
        self._steady = self._heard = None  # whatever it was, it may not be from now on
        state = self._state
        cfg = self.config
        unicast = bool(cfg.unicast_peers)
        counters = self._counters
        counters.advert_rcvd += 1
        addresses = adv.addresses
        if addresses is not self._matching_addresses:
            if addresses != cfg.vips and (
                len(addresses) != len(cfg.vips) or set(addresses) != set(cfg.vips)
            ):
                # keepalived counts and logs a differing list but still processes the advert.
                counters.addr_list_err += 1
            else:
                # The codec hands out the same tuple for the same bytes: next time is a hit.
                self._matching_addresses = addresses
        if unicast and cfg.check_unicast_src and src not in cfg.unicast_peers:
            return self._drop(src, "unknown_source", f"{src} is not a configured unicast peer")
        if adv.priority == 0:
            counters.pri_zero_rcvd += 1
        if state is State.BACKUP:
            self._backup_receive(adv, src, now)
        else:
            self._master_receive(adv, src, now)
        return self._drain()

    # -- §6.4.2 Backup ---------------------------------------------------------------------

    def _backup_receive(self, adv: Advertisement, src: Address, now: float) -> None:
        priority = adv.priority
        if priority == 0:
            # RFC 5798 §6.4.2: the master resigned; take over after Skew_Time only.
            self._protocol_deadline = now + skew_time(
                self.config.version, self._effective, self._master_adver_int
            )
            self._takeover_cause = Cause.PRIORITY_ZERO
            return
        cfg = self.config
        if priority >= self._effective:
            accept = True
            self._preempt_until = None
        elif not cfg.preempt and not cfg.is_owner:
            accept = True  # keepalived's nopreempt applies only in BACKUP; owners ignore it
        elif cfg.preempt_delay > 0 and not cfg.is_owner:
            # keepalived: the first lower-priority advert starts the delay; adverts are accepted
            # (and keep the master alive) until it runs out.
            if self._preempt_until is None:
                self._preempt_until = now + cfg.preempt_delay
            accept = now < self._preempt_until
        else:
            accept = False
        if not accept:
            return  # RFC 5798 §6.4.2: discard; the down timer keeps running
        if cfg.version == 3 and adv.interval != self._master_adver_int:
            self._master_adver_int = adv.interval
            self._mdi = -1.0
        self._protocol_deadline = now + self._master_down()
        self._takeover_cause = Cause.MASTER_DOWN
        self._master_address = src
        self._master_priority = priority
        self._wantstate = State.BACKUP
        if priority >= self._effective and adv.addresses is self._matching_addresses:
            self._heard = adv

    def _master_down(self) -> float:
        if self._mdi < 0:
            cfg = self.config
            self._mdi = master_down_interval(
                cfg.version, self._effective, self._master_adver_int, cfg.down_timer_adverts
            )
        return self._mdi

    # -- §6.4.3 Master ---------------------------------------------------------------------

    def _master_receive(self, adv: Advertisement, src: Address, now: float) -> None:
        cfg = self.config
        priority = adv.priority
        if priority == 0:
            # RFC 5798 §6.4.3: another router resigned; assert ourselves at once.
            self._send_advert(now)
            return
        ours = self._effective
        if priority == ours and src == cfg.address:
            return  # our own advert looped back
        if priority > ours or (priority == ours and int(src) > self._address_int):
            self._emit(SplitBrain(self.name, src, priority, ours, True))
            if cfg.higher_prio_send_advert:
                self._send_advert(now)
            if cfg.version == 3 and adv.interval != self._master_adver_int:
                self._master_adver_int = adv.interval
                self._mdi = -1.0
            self._master_address = src
            self._master_priority = priority
            self._leave_master(now, State.BACKUP, Cause.HIGHER_PRIORITY)
            if self._group is not None:
                self._group.member_left_master(self, now)
            return
        # keepalived (and RFC 9568): answer a lower priority at once and re-announce the
        # addresses, so the other side of a healed split brain learns who is master.
        self._counters.split_brain += 1
        self._emit(SplitBrain(self.name, src, priority, ours, False))
        if cfg.lower_prio_advert:
            self._send_advert(now)
        repeat = cfg.lower_prio_garp_repeat
        if repeat and cfg.vips:
            self._emit(AnnounceVips(self.name, cfg.vips, repeat))

    # -- timers ----------------------------------------------------------------------------

    def handle_timer(self, now: float, *, adverts: bool = True) -> list[Action]:
        """Run every timer whose deadline is at or before ``now``.

        ``adverts=False`` leaves a MASTER's next advert out, as :meth:`next_deadline` does:
        a runtime whose repeats of :meth:`repeat_advert` go out on their own runs the other
        timers (gratuitous ARP rounds) without taking those repeats back first.
        """
        deadline = self._protocol_deadline
        if not adverts and self._state is State.MASTER:
            deadline = None
        if deadline is not None and deadline <= now:
            if self._state is State.MASTER:
                self._send_advert(now)
            elif self._state is State.BACKUP:
                self._protocol_deadline = None
                self._try_master(now, self._takeover_cause)
        cfg = self.config
        deadline = self._garp_deadline
        if deadline is not None and deadline <= now:
            self._garp_deadline = None
            self._emit(AnnounceVips(self.name, cfg.vips, cfg.garp_repeat))
            if cfg.garp_refresh > 0:
                self._refresh_deadline = now + cfg.garp_refresh
        deadline = self._refresh_deadline
        if deadline is not None and deadline <= now:
            self._refresh_deadline = now + cfg.garp_refresh
            self._emit(AnnounceVips(self.name, cfg.vips, cfg.garp_refresh_repeat))
        return self._drain()

    # -- trackers and interface ------------------------------------------------------------

    def tracker_would_flip(self, name: str, ok: bool) -> bool:
        """Whether this result of tracker ``name`` would turn it up or down, the only thing
        :meth:`tracker_result` acts on; otherwise it only moves the tracker's fall/rise count.

        True for an unknown name (:meth:`tracker_result` raises for it). A runtime whose
        adverts go out on their own need not take them back for a result that flips nothing.
        """
        counter = self._tracks.get(name)
        return counter is None or counter.record(bool(ok)).up is not counter.up

    def tracker_result(self, name: str, ok: bool, now: float) -> list[Action]:
        """Feed one result of tracker ``name`` (a timeout is a failure: pass False)."""
        try:
            counter = self._tracks[name]
        except KeyError:
            raise ConfigError(f"{self.name}: no tracker named {name!r}") from None
        updated = counter.record(bool(ok))
        self._tracks[name] = updated
        if updated.up is not counter.up:
            self._reevaluate(now)
        return self._drain()

    def interface_changed(self, up: bool, now: float) -> list[Action]:
        """The router's own interface went up (and running) or down."""
        up = bool(up)
        if up != self._interface_up:
            self._interface_up = up
            self._reevaluate(now)
        return self._drain()

    def source_changed(self, present: bool, now: float) -> list[Action]:
        """The router's source address is on its interface again, or gone from it.

        Gone, the router is in FAULT (keepalived's NO_SOURCE_IP): its adverts cannot leave,
        and a MASTER that cannot advertise must give up its VIPs.
        """
        present = bool(present)
        if present != self._source_present:
            self._source_present = present
            self._reevaluate(now)
        return self._drain()

    def _reevaluate(self, now: float) -> None:
        old = self._effective
        new = self._compute_priority()
        if new != old:
            self._effective = new
            self._mdi = -1.0
            if self._state is State.BACKUP and self._protocol_deadline is not None:
                # keepalived shifts the running down timer by the change in skew.
                cfg = self.config
                mai = self._master_adver_int
                self._protocol_deadline += skew_time(cfg.version, new, mai) - skew_time(
                    cfg.version, old, mai
                )
        state = self._state
        if state is State.INIT or state is State.STOPPED:
            return
        if self.faults:
            if state is not State.FAULT:
                self._enter_fault(now, Cause.FAULT)
                if self._group is not None:
                    self._group.member_fault(self, now)
            elif self._fault_unannounced and not self._only_awaiting_trackers():
                # keepalived's down_instance: announced now, and wanting FAULT (an owner
                # comes back through BACKUP, as from any fault it fell into).
                self._wantstate = State.FAULT
                self._set_state(State.FAULT, Cause.FAULT)  # (clears _fault_unannounced)
        elif state is State.FAULT:
            if self._group is not None:
                self._group.member_recovered(self, now)
            else:
                # keepalived (try_up_instance): an owner goes straight to MASTER only if it
                # still wants MASTER, as at startup; one that fell into FAULT wants FAULT
                # (down_instance), and comes back through BACKUP.
                self._leave_fault(
                    now,
                    owner_cause=Cause.FAULT_CLEARED_OWNER,
                    cause=Cause.FAULT_CLEARED,
                    owner_master=self._wantstate is not State.FAULT,
                )

    def _only_awaiting_trackers(self) -> bool:
        """Whether every fault is a weight-0 tracker with no result yet."""
        return all(name in self._tracks and self._tracks[name].up is None for name in self.faults)

    def _compute_priority(self) -> int:
        return effective_priority(
            self.config.priority,
            (
                tracker_contribution(tr, self._tracks[name].up)
                for name, tr in self._trackers.items()
            ),
        )

    # -- shutdown --------------------------------------------------------------------------

    def shutdown(self, now: float) -> list[Action]:
        """Stop: a MASTER sends priority 0 and removes its addresses; then STOPPED."""
        if self._state is State.STOPPED:
            return []
        if self._state is State.MASTER:
            self._leave_master(now, State.STOPPED, Cause.SHUTDOWN)
        else:
            self._set_state(State.STOPPED, Cause.SHUTDOWN)
        self._protocol_deadline = self._garp_deadline = self._refresh_deadline = None
        self._wantstate = State.STOPPED  # wants nothing more until started again
        if self._group is not None:
            self._group.member_stopped(self, now)
        return self._drain()

    # -- transitions (also driven by a sync group) -----------------------------------------

    def _try_master(self, now: float, cause: Cause) -> None:
        self._wantstate = State.MASTER
        if self._group is not None and not self._group.member_ready(self, now, cause):
            # Held back by the sync group: stay BACKUP and look again after a full interval.
            self._protocol_deadline = now + self._master_down()
            self._takeover_cause = Cause.MASTER_DOWN
            if self._state is State.INIT or self._state is State.STOPPED:
                self._set_state(State.BACKUP, Cause.STARTUP)
            return
        if self._state is not State.MASTER:
            self._become_master(now, cause)

    def _become_master(self, now: float, cause: Cause) -> None:
        cfg = self.config
        self._wantstate = State.MASTER
        # keepalived's order: advert first (so the old master drops the addresses before ARP
        # moves them), then the addresses, then gratuitous ARP/NA, then notifications.
        self._send_advert(now)
        if cfg.vips:
            self._emit(AddVips(self.name, cfg.vips))
            if cfg.garp_repeat:
                self._emit(AnnounceVips(self.name, cfg.vips, cfg.garp_repeat))
                if cfg.garp_delay > 0:
                    self._garp_deadline = now + cfg.garp_delay
                elif cfg.garp_refresh > 0:
                    self._refresh_deadline = now + cfg.garp_refresh
            elif cfg.garp_refresh > 0:
                # No burst on taking over, but the periodic refresh all the same (keepalived
                # arms it in vrrp_state_become_master whatever garp_rep is).
                self._refresh_deadline = now + cfg.garp_refresh
        self._master_address = cfg.address
        self._master_priority = self._effective
        self._preempt_until = None
        self._counters.become_master += 1
        self._set_state(State.MASTER, cause)

    def _leave_master(self, now: float, new: State, cause: Cause) -> None:
        cfg = self.config
        if new is not State.BACKUP:
            # Resign with priority 0 so a backup takes over after Skew_Time (RFC 5798 §6.4.3;
            # keepalived also does it on MASTER -> FAULT, once per path, twice in practice).
            self._emit(self._advert(0))
            self._counters.advert_sent += 1
            self._counters.pri_zero_sent += 1
        if cfg.vips:
            self._emit(RemoveVips(self.name, cfg.vips))
        self._garp_deadline = self._refresh_deadline = None
        self._counters.release_master += 1
        if new is State.BACKUP:
            self._protocol_deadline = now + self._master_down()
            self._takeover_cause = Cause.MASTER_DOWN
            self._wantstate = State.BACKUP
        else:
            self._protocol_deadline = None
        self._set_state(new, cause)

    def _enter_backup(self, now: float, cause: Cause) -> None:
        self._wantstate = State.BACKUP
        self._preempt_until = None
        self._protocol_deadline = now + self._master_down()
        self._takeover_cause = Cause.MASTER_DOWN
        self._set_state(State.BACKUP, cause)

    def _enter_fault(self, now: float, cause: Cause) -> None:
        if self._state is State.MASTER:
            self._leave_master(now, State.FAULT, cause)
        else:
            self._protocol_deadline = None
            self._set_state(State.FAULT, cause)
        self._wantstate = State.FAULT

    def _leave_fault(
        self, now: float, *, owner_cause: Cause, cause: Cause, owner_master: bool = True
    ) -> None:
        # keepalived resets Master_Adver_Interval to ours on leaving FAULT.
        if self._master_adver_int != self.config.interval:
            self._master_adver_int = self.config.interval
            self._mdi = -1.0
        self._master_address = None
        self._master_priority = None
        if self.config.unicast_peers:
            # keepalived (try_up_instance): the peers, which are sent to directly, re-learn
            # our own address's link-layer address, which may have changed meanwhile.
            self._emit(AnnounceVips(self.name, (self.config.address,), 1))
        if self.config.is_owner and owner_master:
            self._wantstate = State.MASTER
            self._become_master(now, owner_cause)
        else:
            self._enter_backup(now, cause)

    # -- plumbing --------------------------------------------------------------------------

    def _set_state(self, new: State, cause: Cause) -> None:
        old = self._state
        if not is_allowed(old, cause, new):
            raise AssertionError(f"{self.name}: transition {old} --{cause}--> {new} not in table")
        self._state = new
        self._fault_unannounced = False
        # The fast path repeats what a BACKUP did with an advert; a state between two such
        # adverts (FAULT resets Master_Adver_Interval) may have changed what that is.
        self._steady = None
        self._emit(StateChanged(self.name, old, new, cause.value, self._effective))

    def _advert(self, priority: int) -> SendAdvertisement:
        # One (immutable) action per priority: a master sends the same advert every interval.
        action = self._adverts.get(priority)
        if action is None:
            cfg = self.config
            adv = Advertisement(
                version=cfg.version,
                vrid=cfg.vrid,
                priority=priority,
                interval=cfg.interval,
                addresses=cfg.vips,
                auth_type=cfg.auth_type,
                auth_data=cfg.auth_data,
            )
            action = self._adverts[priority] = SendAdvertisement(self.name, adv)
        return action

    def _send_advert(self, now: float) -> None:
        # RFC 5798 §6.4.3: a master advertises its own configured interval.
        self._emit(self._advert(self._effective))
        self._counters.advert_sent += 1
        interval = self.config.interval
        if self.config.align_adverts:
            # The next multiple of the interval: never later than now + interval.
            deadline = (math.floor(now / interval) + 1) * interval
            self._protocol_deadline = deadline if deadline > now else deadline + interval
        else:
            self._protocol_deadline = now + interval

    def _drop(self, src: Address | None, counter: str, detail: str) -> list[Action]:
        setattr(self._counters, counter, getattr(self._counters, counter) + 1)
        return [PacketDropped(self.name, src, counter, detail)]

    def _emit(self, action: Action) -> None:
        self._outbox.append(action)

    def _drain(self) -> list[Action]:
        actions = self._outbox
        if not actions:
            return []
        self._outbox = []
        return actions

    def __repr__(self) -> str:
        return f"<Router {self.name} vrid={self.config.vrid} {self._state} prio={self._effective}>"
