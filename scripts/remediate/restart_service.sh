#!/bin/sh
# restart_service.sh UNIT | -- COMMAND [ARG]... - restart the service, for
# the genesis runbooks' restart actions. With a systemd unit name, asks
# systemd (systemctl restart UNIT) and prints the unit's state after;
# after "--", runs the given command instead (a service manager of your
# own, a container runtime...). vigil runs it with a clean environment
# that names the incident (VIGIL_INCIDENT_ID, VIGIL_RULE...), a timeout,
# and records what it prints and its exit code.
set -u
[ $# -ge 1 ] || { echo "usage: restart_service.sh UNIT | -- COMMAND..." >&2; exit 2; }
echo "incident ${VIGIL_INCIDENT_ID:-?} (${VIGIL_RULE:-?}): restarting $*"
if [ "$1" = "--" ]; then
    shift
    [ $# -ge 1 ] || { echo "no command after --" >&2; exit 2; }
    exec "$@"
fi
command -v systemctl >/dev/null 2>&1 || {
    echo "no systemctl on this host: configure a command instead" \
         "(genesis.levels remediation.restart = { \"--\", \"/path/to/cmd\" })" >&2
    exit 3
}
systemctl restart "$1" || exit $?
systemctl is-active "$1"
