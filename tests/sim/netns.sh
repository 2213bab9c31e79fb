#!/bin/sh
# netns.sh - a network namespace behind a veth pair, so that the genesis
# simulator's exchange can sit behind a link with a real delay (netem):
# then even the TCP connect RTT to it is slow, as with a distant exchange.
#
#   netns.sh up NAME        create namespace NAME and a veth pair to it;
#                           prints "HOST_IP NS_IP" (a /30 in 10.213.0.0/16)
#   netns.sh delay NAME MS  delay every packet leaving the namespace by MS
#                           milliseconds (tc netem); 0 removes the delay
#   netns.sh down NAME      stop what still runs in NAME, delete it (that
#                           deletes the veth pair too); quiet if absent
#   netns.sh check          can this host do it? exit 0, or 77 with why
#
# Needs root, iproute2 (ip, tc), and for `delay` a kernel with netem
# (CONFIG_NET_SCH_NETEM). Where netem is missing, `delay` with MS > 0
# exits 77 and says so; `up`/`down` still work. `up` cleans up after
# itself when a step fails. Run processes inside with
# `ip netns exec NAME COMMAND`.
set -u

die() {
    echo "netns.sh: $*" >&2
    exit "${code:-1}"
}

need_root() {
    [ "$(id -u)" -eq 0 ] || code=77 die "needs root"
    command -v ip >/dev/null 2>&1 || code=77 die "no ip (install iproute2)"
}

# The index N of a veth "gsimN" we created atomically: `ip link add`
# fails when another run holds that name, so take the next one.
up() {
    name=$1
    ip netns add "$name" || die "cannot create namespace $name"
    n=0
    while [ $n -lt 256 ]; do
        if ip link add "gsim$n" type veth peer name eth0 netns "$name" \
            2>/dev/null; then
            break
        fi
        n=$((n + 1))
    done
    if [ $n -ge 256 ]; then
        ip netns del "$name"
        die "no free veth name gsim0..gsim255"
    fi
    host=10.213.$n.1
    peer=10.213.$n.2
    if ! { ip addr add "$host/30" dev "gsim$n" &&
        ip link set "gsim$n" up &&
        ip -n "$name" addr add "$peer/30" dev eth0 &&
        ip -n "$name" link set eth0 up &&
        ip -n "$name" link set lo up; }; then
        down "$name"
        die "cannot set up the veth pair gsim$n <-> $name/eth0"
    fi
    echo "$host $peer"
}

delay() {
    name=$1
    ms=$2
    case $ms in
    '' | *[!0-9]*) die "delay: MS must be a whole number of milliseconds" ;;
    esac
    if [ "$ms" -eq 0 ]; then
        ip netns exec "$name" tc qdisc del dev eth0 root 2>/dev/null
        return 0
    fi
    command -v tc >/dev/null 2>&1 || code=77 die "no tc (install iproute2)"
    if ! err=$(ip netns exec "$name" tc qdisc replace dev eth0 root netem \
        delay "${ms}ms" 2>&1); then
        case $err in
        *"qdisc kind is unknown"*)
            code=77 die "this kernel has no netem (CONFIG_NET_SCH_NETEM)" ;;
        esac
        die "tc: $err"
    fi
}

down() {
    name=$1
    ip netns list | grep -q "^$name\( \|$\)" || return 0
    # Only what runs in this namespace, which this script made.
    pids=$(ip netns pids "$name")
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086 # a list of pids
        kill -TERM $pids 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            [ -z "$(ip netns pids "$name")" ] && break
            sleep 0.2
        done
        pids=$(ip netns pids "$name")
        # shellcheck disable=SC2086
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    fi
    # Deleting one end deletes the pair at once; `ip netns del` alone
    # leaves the kernel to do it some time later.
    ip -n "$name" link del eth0 2>/dev/null
    ip netns del "$name"
}

check() {
    need_root
    command -v tc >/dev/null 2>&1 || code=77 die "no tc (install iproute2)"
    probe=gsim-check-$$
    up "$probe" >/dev/null || exit 1
    (delay "$probe" 1)
    rc=$?
    down "$probe"
    return $rc
}

[ $# -ge 1 ] || die "usage: netns.sh up|delay|down NAME [MS] | check"
cmd=$1
shift
case $cmd in
up | down)
    [ $# -eq 1 ] || die "usage: netns.sh $cmd NAME"
    need_root
    $cmd "$1"
    ;;
delay)
    [ $# -eq 2 ] || die "usage: netns.sh delay NAME MS"
    need_root
    delay "$1" "$2"
    ;;
check) check ;;
*) die "unknown command $cmd" ;;
esac
