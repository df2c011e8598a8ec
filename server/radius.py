"""RADIUS for the verification service (`serve --radius`): VPN concentrators, network appliances
and sshd's `pam_radius_auth` send an Access-Request (PAP); the answer is Access-Accept or
Access-Reject. Packets are pyrad's to parse and build, never ours.

- A client is one of the store's clients with a RADIUS shared secret, found by the sender's
  address (its `--source` networks). A packet from anyone else is dropped, silently.
- Every Access-Request must carry a valid Message-Authenticator (RFC 2869; the BlastRADIUS
  countermeasure, CVE-2024-3596): one without it, or signed with another secret, is dropped.
  A client made with `--radius-unsigned` may omit it (NASes and pam_radius_auth before 3.0):
  keep those on loopback or a network no one else can write to.
- User-Password is the code (or a recovery code); for a client made with `--radius-password`,
  the user's password followed by the code.
- A retransmission (same sender, identifier and authenticator, within 30 s) gets the answer the
  first got, as RFC 5080 asks: a lost Access-Accept must not turn into a REJECT for a code
  already spent. A replay later is a replay: the code's step is spent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from pyrad import packet
from pyrad.dictionary import Dictionary
from pyrad.server import RemoteHost
from pyrad.server_async import ServerAsync

from store.clients import Client
from store.errors import StoreError
from store.models import Outcome
from store.service import Service

DICTIONARY = Path(__file__).with_name("radius.dictionary")
CLIENTS_SECONDS = 5.0  # how old the list of RADIUS clients may get (added or revoked elsewhere)
DUPLICATE_SECONDS = 30.0

logging.getLogger("pyrad").setLevel(logging.CRITICAL)  # a dropped packet is not a log line per packet


class _Clients(dict):
    """pyrad's `hosts` mapping, answered from the store's RADIUS clients by network: pyrad looks a
    sender up by its address (and '0.0.0.0' for "anyone else", which a 0.0.0.0/0 client is)."""

    def __init__(self) -> None:
        super().__init__()
        self.table: list[tuple[Client, str]] = []

    def find(self, address: str) -> tuple[Client, str] | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        return next(((c, s) for c, s in self.table if any(ip in n for n in c.sources)), None)

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and self.find(address) is not None

    def __getitem__(self, address: str) -> RemoteHost:
        client, secret = self.find(address)
        return RemoteHost(address, secret.encode(), client.name)


class RadiusServer(ServerAsync):
    def __init__(self, service: Service, run: Callable, port: int):
        # A Message-Authenticator present is always checked (pyrad); one missing is refused below, per client.
        super().__init__(auth_port=port, hosts=_Clients(), dictionary=Dictionary(str(DICTIONARY)), enforce_ma=False)
        self.service, self._run = service, run
        self._fetched = 0.0
        self._answers: OrderedDict[tuple, tuple[float, bytes]] = OrderedDict()  # oldest first
        self._under_way: set[asyncio.Task] = set()

    async def refresh(self) -> None:
        self.hosts.table = await self._run(self.service.radius_clients)
        self._fetched = time.monotonic()

    async def start(self, host: str) -> int:
        await self.refresh()
        await self.initialize_transports(enable_auth=True, addresses=[host])
        return self.auth_protocols[0].transport.get_extra_info("sockname")[1]

    async def stop(self) -> None:
        await self.deinitialize_transports()
        if self._under_way:
            await asyncio.wait(self._under_way)

    def handle_auth_packet(self, protocol, pkt, addr) -> None:
        if time.monotonic() - self._fetched > CLIENTS_SECONDS:
            self._fetched = time.monotonic()  # one refresh at a time
            self._spawn(self.refresh())
        seen = (addr, pkt.id, pkt.authenticator)
        now = time.monotonic()
        while self._answers and now - next(iter(self._answers.values()))[0] >= DUPLICATE_SECONDS:
            self._answers.popitem(last=False)
        if seen in self._answers:
            protocol.transport.sendto(self._answers[seen][1], addr)
            return
        self._spawn(self._answer(protocol, pkt, addr, seen))

    def handle_acct_packet(self, protocol, pkt, addr) -> None:  # not listened for
        pass

    def handle_coa_packet(self, protocol, pkt, addr) -> None:  # not listened for
        pass

    def handle_disconnect_packet(self, protocol, pkt, addr) -> None:  # not listened for
        pass

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._under_way.add(task)
        task.add_done_callback(self._under_way.discard)

    async def _answer(self, protocol, pkt, addr, seen) -> None:
        found = self.hosts.find(addr[0])
        if found is None or not (pkt.message_authenticator or found[0].radius_unsigned):
            return  # dropped, as a packet signed with another secret is
        try:
            user = pkt["User-Name"][0]  # pyrad leaves a name that is not UTF-8 as bytes
            typed = pkt.PwDecrypt(pkt[2][0])  # User-Password's bytes, as sent (they are not text until decrypted)
        except (KeyError, IndexError, UnicodeDecodeError, packet.PacketError):  # PacketError: not 16-byte blocks
            user = typed = None  # nothing to check
        accepted = isinstance(user, str) and isinstance(typed, str) and await self._check(found[0], user, typed)
        reply = self.CreateReplyPacket(pkt)
        reply.code = packet.AccessAccept if accepted else packet.AccessReject
        data = reply.ReplyPacket()
        self._answers[seen] = (time.monotonic(), data)
        protocol.transport.sendto(data, addr)

    async def _check(self, client: Client, user: str, typed: str) -> bool:
        actor = f"client:{client.name}"
        try:
            if client.radius_password:
                result = await self._run(lambda: self.service.check_password_and_code(user, typed, actor=actor))
            else:
                result = await self._run(lambda: self.service.verify(user, typed, actor=actor))
        except StoreError:
            return False  # busy or unreachable: fail closed
        return result.outcome is Outcome.OK
