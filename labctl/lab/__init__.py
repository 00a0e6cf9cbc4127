"""The local lab: four hosts (client, online, target, assistant) in network namespaces.

    info = build_lab(LabSpec(name="t1"))      # < 0.5 s here; LabError (cleaned up) on failure
    assert_routes_via_lab(info)               # before sending anything from the root namespace
    destroy_lab("t1")                         # idempotent; also works on a half-built lab

Topology of lab N (namespaces lc-<name>-<role>, plus lc-<name>-router):

    root ns  lc-<name>-op 10.77.N.1 --veth-- router: br0 10.77.N.254 (bridge), p-client 10.78.N.1
    online 10.77.N.10, target 10.77.N.20, assistant 10.77.N.30 (eth0, bridged in the router)
    with `online_hosts` 2..16 also online2 10.77.N.11 and online3..online16 at 10.77.N.103-.116
    client 10.78.N.10 (+ .11-.19) default via 10.78.N.1
    routes: root/online/assistant 10.78.N.0/24 via 10.77.N.254; target 10.78.N.0/24 via the
    assistant; ip_forward: router 1, everything else 0; bridge-nf-call-* 0 in the router;
    IPv6 off and rp_filter 0 in lab namespaces; tx/tso/gso offloads off on every lab link.
    The fake-client pool 10.79.N.0/24 is reserved but not routed by the lab.

Services: sshd on online/target/assistant (own ed25519 host key, key-only root login, hostname =
role via a UTS namespace; <dir>/known_hosts lists the three host keys, <dir>/id_ed25519 is the
operator key; a login on a lab host runs the host's own shell start-up, <host dir>/host.bashrc
bound over root's `.bashrc` and `.profile` in sshd's mount namespace, not the operator's);
nginx on online and target, port 80, with <host dir>/{nginx.conf,nginx.pid,access.log,
bodies.log,error.log}. Virtual hosts: the default server (named after the role) and
`a.example`, `b.example`, each with the same endpoints: `/` small page, `/echo` (POST: the whole
body is read, the answer is its length + newline), `/api/...` (GET/HEAD/OPTIONS: "api";
other methods: like /echo), `/static/...` ("static"), `/slow` (32 KiB at 16 KiB/s: about 1 s),
`/big` (1 MiB).

Access log format `labctl` (one line per request):

    $remote_addr [$time_iso8601] "$request_method $request_uri $server_protocol" $status
    $body_bytes_sent $request_length "$content_length" $request_time $connection
    $connection_requests "$http_user_agent" "$host" $remote_port

e.g. `10.78.1.10 [2026-11-27T07:34:22+00:00] "POST /echo HTTP/1.1" 200 5 1602 "1452" 0.000 2 1
"curl/7.88.1" "a.example" 40312`. "$content_length" is the request body length ("-" when there is
none); "$host" (added for engine.select's host rules; lines of an older lab without it still
parse as `labctl`) is the Host header without port, or the server name; "$remote_port" (the
client's port: with the address, the unit `-r` samples whole; lines without it still parse)
lets verify count sampling units when clients reuse ports. Compared with nginx's
built-in `combined` format
(`$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer"
"$http_user_agent"`), it drops user and referer and adds the method/URI split, the request length
and body length, $request_time, the connection number and its request count, and the host,
which is what the loss ledger compares between online and target.

`bodies.log` (format `bodies`, `escape=json`): `$request_method $request_uri $request_body` for
every request to /echo or /api/ that has a body (Content-Length or chunked), so a lab test can
compare the bodies the target received with the online ones byte for byte.

Modules: `spec` (pure: names, address plan, LabInfo and its JSON), `net` (netlink, sysctls,
offloads; the only pyroute2 user), `services` (sshd, nginx), `build` (build/destroy/status),
`inventory` (the lab's inventory YAML, written where `up` finds it), `traffic` (the client
traffic generator, run inside the client namespace).

May import: labctl.errors, labctl.inventory, labctl.hosts.journal (the local state directory),
labctl.transport. Never labctl.verify, labctl.drill, labctl.report or labctl.cli.
"""

from __future__ import annotations

from labctl.lab.build import (
    HostStatus,
    LabStatus,
    ServiceStatus,
    build_lab,
    destroy_lab,
    lab_status,
    list_labs,
    load_lab,
)
from labctl.lab.net import assert_routes_via_lab
from labctl.lab.spec import DEFAULT_BASE_DIR, HostInfo, LabInfo, LabSpec, plan_lab

__all__ = [
    "DEFAULT_BASE_DIR",
    "HostInfo",
    "HostStatus",
    "LabInfo",
    "LabSpec",
    "LabStatus",
    "ServiceStatus",
    "assert_routes_via_lab",
    "build_lab",
    "destroy_lab",
    "lab_status",
    "list_labs",
    "load_lab",
    "plan_lab",
]
