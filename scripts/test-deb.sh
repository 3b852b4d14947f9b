#!/usr/bin/env bash
# Test the Debian package as an admin uses it: build it (scripts/build-deb.sh, or the .deb
# named by POSTERN_DEB), `dpkg -i` it, check its files, users and modes and that it started
# nothing, `systemd-analyze verify` its units, run the four daemons from the installed paths
# as the installed users (runuser: there is no systemd here), deliver one message over SMTP
# and one through the setgid /usr/sbin/sendmail, read them over IMAP, then `dpkg --purge` and
# check that it is gone; last, a config that names the host before the install gets the
# units enabled.
#
#   scripts/test-deb.sh          # as root
#
# It all happens in a throwaway copy of this machine: an overlay of / in private mount, PID
# and network namespaces (only loopback, nothing reaches outside; every daemon dies with the
# namespace). The host's packages, users and files are untouched, so an installed Postfix
# (which the package replaces, Conflicts/Replaces: mail-transport-agent) stays as it is.
# Prints "N passed, 0 failed" at the end.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")

die() {
    echo "test-deb: FAILED: $*" >&2
    exit 1
}

if [[ ${1:-} != --sandbox && ${1:-} != --inside ]]; then
    (($(id -u) == 0)) || die "needs root (dpkg, users, namespaces)"
    cd "$(dirname "$SELF")/.."
    deb=${POSTERN_DEB:-}
    if [[ -z $deb ]]; then
        deb=$(scripts/build-deb.sh | tail -n 1)
    fi
    [[ -f $deb ]] || die "no .deb at '$deb'"
    deb=$(readlink -f "$deb")
    # systemd-analyze (Debian's systemd package) checks the units; installed when missing.
    if ! command -v systemd-analyze >/dev/null; then
        echo "test-deb: installing Debian's systemd for systemd-analyze"
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd \
            || echo "test-deb: systemd-analyze not installable: the unit check will be skipped"
    fi
    command -v python3 >/dev/null || die "needs python3 (smtplib, imaplib)"
    echo "test-deb: testing $deb ($(du -h "$deb" | cut -f1)) in a throwaway overlay of /"
    exec unshare --mount --pid --net --fork --propagation private "$SELF" --sandbox "$deb"
fi

if [[ $1 == --sandbox ]]; then
    # PID 1 of new namespaces: make the overlay root and run the test inside it.
    deb=$2
    # A tmpfs over /mnt, seen only in this mount namespace: nothing is left on the host.
    top=/mnt
    mount -t tmpfs -o mode=0700 test-deb "$top"
    mkdir "$top/upper" "$top/work" "$top/root"
    mount -t overlay test-deb -o "lowerdir=/,upperdir=$top/upper,workdir=$top/work" "$top/root"
    R=$top/root
    mount -t proc proc "$R/proc"
    mount --rbind /dev "$R/dev"
    mount --rbind /sys "$R/sys"
    mount -t tmpfs -o mode=0755 run "$R/run"
    mount -t tmpfs -o mode=1777 tmp "$R/tmp"
    # Under its own name: apt's install of a local file wants NAME_VERSION_ARCH.deb.
    cp "$deb" "$R/tmp/$(basename "$deb")"
    cp "$SELF" "$R/tmp/test-deb.sh"
    ip link set lo up
    rc=0
    chroot "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 /bin/bash /tmp/test-deb.sh --inside "/tmp/$(basename "$deb")" || rc=$?
    exit "$rc"
fi

# ---- inside the overlay root ---------------------------------------------------------------
deb=$2
CONF=/etc/postern/postern.toml
PASSED=0
FAILED=0
ok() {
    PASSED=$((PASSED + 1))
    echo "ok: $*"
}
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then
        ok "$what"
    else
        FAILED=$((FAILED + 1))
        echo "NOT OK: $what" >&2
    fi
}
# mode, owner and group of a path, as stat prints them: "2755 root:postdrop"
perms() { stat -c '%a %U:%G' "$1"; }
has_perms() { # has_perms PATH "MODE USER:GROUP"
    local got
    got=$(perms "$1" 2>&1) || true
    [[ $got == "$2" ]] || {
        echo "  $1: $got, expected $2" >&2
        return 1
    }
}
finish() {
    local rc=$?
    echo
    echo "test-deb: $PASSED passed, $FAILED failed"
    if ((rc == 0 && FAILED > 0)); then rc=1; fi
    exit "$rc"
}
trap finish EXIT

# No maintainer script of any package may start or stop a service of the host from here.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d

# A fresh machine has no vmail user; this one may have (an earlier manual install): remove it
# here, in the overlay only, so that the postinst's path that makes it runs.
if getent passwd vmail >/dev/null; then
    echo "(removing the existing vmail user inside the overlay)"
    userdel vmail
    ! getent group vmail >/dev/null || groupdel vmail
fi

echo "== before: MTA installed here"
dpkg-query -W -f '${Package} ${Status} provides:${Provides}\n' 2>/dev/null | grep 'mail-transport-agent' || echo "(none)"
other_mta=$(dpkg-query -W -f '${Package} ${Status} ${Provides}\n' 2>/dev/null \
    | awk '/install ok installed/ && /mail-transport-agent/ {print $1}' | head -n 1)

echo
if [[ -n $other_mta ]]; then
    # dpkg -i refuses while another MTA is installed (both provide mail-transport-agent); apt
    # removes it, as an admin's `apt install ./postern_*.deb` does (nothing to download here).
    echo "== apt-get install $deb (replacing $other_mta)"
    apt-get install -y -q "$deb" 2>&1 | tee /tmp/dpkg-install.log
else
    echo "== dpkg -i $deb"
    dpkg -i "$deb" 2>&1 | tee /tmp/dpkg-install.log
fi
check "dpkg -i: postern installed" \
    bash -c "dpkg-query -W -f '\${Status}' postern | grep -qx 'install ok installed'"
dpkg-query -W -f '${Package} ${Version} ${Architecture}\nDepends: ${Depends}\nProvides: ${Provides}\nConflicts: ${Conflicts}\nReplaces: ${Replaces}\n' postern
if [[ -n $other_mta ]]; then
    check "dpkg -i replaced the other MTA ($other_mta)" \
        bash -c "! dpkg-query -W -f '\${Status}' $other_mta 2>/dev/null | grep -q 'install ok installed'"
fi
check "postinst says it started nothing and what to do" \
    grep -q "installed, NOT started: $CONF still has the example's hostname" /tmp/dpkg-install.log

echo
echo "== files and modes"
for f in /usr/bin/authd /usr/bin/lmtp-deliver /usr/bin/smtpd /usr/bin/imapd /usr/bin/mailctl \
    /usr/sbin/sendmail /usr/bin/mailq /usr/bin/newaliases /usr/lib/sendmail \
    /lib/systemd/system/postern*.service /lib/systemd/system/postern.target \
    $CONF /etc/postern /var/lib/postern /var/vmail /run/postern; do
    printf '%-45s %s\n' "$f" "$(stat -c '%A %a %U:%G' "$f")$( [[ -L $f ]] && echo " -> $(readlink "$f")")"
done
for b in authd lmtp-deliver smtpd imapd mailctl; do
    check "/usr/bin/$b 0755 root:root" has_perms /usr/bin/$b "755 root:root"
done
check "/usr/sbin/sendmail setgid postdrop (2755 root:postdrop)" has_perms /usr/sbin/sendmail "2755 root:postdrop"
check "sendmail's mode is a dpkg-statoverride" bash -c 'dpkg-statoverride --list /usr/sbin/sendmail | grep -qx "root postdrop 2755 /usr/sbin/sendmail"'
for l in /usr/bin/mailq /usr/bin/newaliases /usr/lib/sendmail; do
    check "$l -> ../sbin/sendmail" test "$(readlink $l)" = ../sbin/sendmail
done
for u in postern.target postern-authd.service postern-lmtp-deliver.service postern-smtpd.service postern-imapd.service; do
    check "unit $u installed, 0644" has_perms /lib/systemd/system/$u "644 root:root"
done
check "$CONF 0640 root:postdrop" has_perms $CONF "640 root:postdrop"
check "/var/lib/postern 0700 postern:postern" has_perms /var/lib/postern "700 postern:postern"
check "/var/vmail 0750 vmail:vmail" has_perms /var/vmail "750 vmail:vmail"
check "/run/postern 0755 postern:postern" has_perms /run/postern "755 postern:postern"
check "the conffile's control socket is for postdrop" \
    grep -qx 'control_socket = { path = "smtpd", mode = "0660", group = "postdrop" }' $CONF
check "the conffile's lmtp socket is for postern" \
    grep -qx 'socket = { path = "lmtp", mode = "0660", group = "postern" }' $CONF
check "the conffile's userdb answers with vmail's uid and gid" \
    bash -c "grep -qx 'uid = $(id -u vmail)' $CONF && grep -qx 'gid = $(id -g vmail)' $CONF"
check "the conffile is the documented example plus those lines" bash -c \
    "diff <(grep -v '^#' /usr/share/postern/postern.toml.example) <(grep -v '^#' $CONF) | grep -c '^>' | grep -qx 4"

echo
echo "== users"
getent passwd postern vmail
getent group postdrop postern vmail
check "user postern: system, no login, home /var/lib/postern" \
    bash -c 'IFS=: read -r _ _ uid _ _ home shell < <(getent passwd postern); ((uid < 1000)) && [[ $home == /var/lib/postern && $shell == /usr/sbin/nologin ]]'
check "user vmail: no login, home /var/vmail" \
    bash -c 'IFS=: read -r _ _ _ _ _ home shell < <(getent passwd vmail); [[ $home == /var/vmail && $shell == /usr/sbin/nologin ]]'
check "vmail is in group postern (authd's userdb socket)" bash -c 'id -nG vmail | tr " " "\n" | grep -qx postern'
check "group postdrop exists" getent group postdrop
check "nobody is in postdrop" bash -c '[[ -z $(getent group postdrop | cut -d: -f4) ]]'

echo
echo "== nothing enabled or started while the hostname is the example's"
check "postern.target not enabled" bash -c '! DPKG_MAINTSCRIPT_PACKAGE=postern deb-systemd-helper --quiet was-enabled postern.target && [[ ! -e /etc/systemd/system/multi-user.target.wants/postern.target ]]'
check "no listener" bash -c '[[ -z $(ss -Htln) ]]'

echo
echo "== dpkg -i again (upgrade path, idempotent): users, config and modes kept"
sum_before=$(sha256sum $CONF; getent passwd postern vmail; getent group postdrop postern vmail)
dpkg -i "$deb" >/tmp/dpkg-reinstall.log 2>&1 || { cat /tmp/dpkg-reinstall.log; die "second dpkg -i failed"; }
check "second install changed no user, group or config" \
    test "$sum_before" = "$(sha256sum $CONF; getent passwd postern vmail; getent group postdrop postern vmail)"
check "sendmail still 2755 root:postdrop" has_perms /usr/sbin/sendmail "2755 root:postdrop"

echo
echo "== systemd-analyze verify"
if command -v systemd-analyze >/dev/null; then
    if systemd-analyze verify /lib/systemd/system/postern.target /lib/systemd/system/postern-*.service \
        >/tmp/verify.log 2>&1; then
        cat /tmp/verify.log
        ok "systemd-analyze verify: the units"
    else
        cat /tmp/verify.log
        # Lines about units of other packages missing in this container are not the units' fault.
        if grep -v -E 'mariadb|mysql|postgresql|network-online|Failed to create|Cannot determine cgroup|Unit .* not found' /tmp/verify.log \
            | grep -q -i 'postern'; then
            check "systemd-analyze verify: the units" false
        else
            ok "systemd-analyze verify: the units (only other packages' units are missing here)"
        fi
    fi
else
    echo "!! systemd-analyze not available: unit check SKIPPED"
fi

echo
echo "== the admin configures it: hostname, TLS, ports moved to loopback test ports"
sed -i 's/^hostname = "mail.example.org"/hostname = "mail.example.test"/' $CONF
# Every public listener onto 127.0.0.1 (port + 20000): this namespace has only loopback.
perl -pi -e 's/\["0\.0\.0\.0:(\d+)", "\[::\]:\d+"\]/"[\"127.0.0.1:" . ($1 + 20000) . "\"]"/ge' $CONF
grep -n -E '^(hostname|listen|submission|submissions|imap|imaps|pop3|pop3s|managesieve_listen) ' $CONF
mkdir -p /etc/postern/tls
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=mail.example.test \
    -keyout /etc/postern/tls/privkey.pem -out /etc/postern/tls/fullchain.pem 2>/dev/null
chown root:postern /etc/postern/tls/privkey.pem
chmod 0640 /etc/postern/tls/privkey.pem
sed -i 's|^# \[tls\]$|[tls]|; s|^# cert = "/etc/postern/tls/fullchain.pem"|cert = "/etc/postern/tls/fullchain.pem"|; s|^# key = "/etc/postern/tls/privkey.pem"|key = "/etc/postern/tls/privkey.pem"|' $CONF
check "smtpd --check-config" /usr/bin/smtpd --config $CONF --check-config
check "authd --check-config" /usr/bin/authd --config $CONF --check-config

echo
echo "== the daemons from the installed paths as the installed users"
# As the units run them: User= and Group= (with the user's own groups), SupplementaryGroups=
# postdrop, UMask=, and RuntimeDirectory=postern, which systemd gives to the starting unit's
# user (mode 0755) before each start.
start() { # start USER UMASK DAEMON
    local groups=() g
    for g in $(id -nG "$1") postdrop; do
        [[ $g == "$1" ]] || groups+=(-G "$g")
    done
    chown "$1:$1" /run/postern
    chmod 0755 /run/postern
    (umask "$2" && exec runuser -u "$1" -g "$1" "${groups[@]}" -- /usr/bin/"$3" --config $CONF) >/tmp/"$3".log 2>&1 &
    echo "$!" >/tmp/"$3".pid
    for _ in $(seq 1 200); do
        grep -q 'ready' /tmp/"$3".log && break
        kill -0 "$(cat /tmp/"$3".pid)" 2>/dev/null || break
        sleep 0.1
    done
    if grep -q 'ready' /tmp/"$3".log; then
        ok "$3 ready as $1 ($(ps -o user=,group=,supgrp=,umask= -p "$(pgrep -x "$3" | head -n 1)"))"
    else
        cat /tmp/"$3".log >&2
        die "$3 did not start as $1"
    fi
}
start postern 0077 authd
start vmail 0027 lmtp-deliver
start postern 0027 smtpd
start vmail 0027 imapd
ls -l /run/postern
check "socket auth-userdb postern:postern 0660" has_perms /run/postern/auth-userdb "660 postern:postern"
check "socket lmtp vmail:postern 0660" has_perms /run/postern/lmtp "660 vmail:postern"
check "socket smtpd postern:postdrop 0660" has_perms /run/postern/smtpd "660 postern:postdrop"
ss -Htln

echo
echo "== accounts (root's mailctl, as INSTALL.md)"
mailctl --config $CONF domain add example.test
echo 'correct horse battery' | mailctl --config $CONF user add alice@example.test
ls -l /var/lib/postern
# root's mailctl made the SQLite database root's (authd, as postern, could read it but not
# record lockouts): hand it to postern, as deploy/INSTALL.md says.
chown postern:postern /var/lib/postern/postern.db*

echo
echo "== deliver one message over SMTP, one through /usr/sbin/sendmail as an ordinary user"
python3 - <<'PY'
import smtplib
msg = (
    "From: Bob <bob@remote.example>\r\n"
    "To: alice@example.test\r\n"
    "Subject: test-deb over SMTP\r\n"
    "Message-ID: <test-deb-smtp@remote.example>\r\n"
    "\r\n"
    "delivered by the installed smtpd: token-5f1c\r\n"
)
with smtplib.SMTP("127.0.0.1", 20025, timeout=30) as s:
    print("EHLO:", s.ehlo("client.remote.example")[0])
    refused = s.sendmail("bob@remote.example", ["alice@example.test"], msg)
    assert not refused, refused
    print("accepted by smtpd on 127.0.0.1:20025")
PY
printf 'Subject: test-deb via sendmail\n\nsent by nobody through the setgid sendmail: token-77ab\n' \
    | runuser -u nobody -- /usr/sbin/sendmail -oi alice@example.test
ok "nobody's sendmail accepted the message"
check "mailq as an ordinary user is refused" bash -c '! runuser -u nobody -- /usr/bin/mailq >/dev/null 2>&1'
mailq || true

maildir=/var/vmail/example.test/alice/Maildir
for _ in $(seq 1 300); do
    (($(find $maildir/new $maildir/cur -type f 2>/dev/null | wc -l) >= 2)) && break
    sleep 0.1
done
ls -ln $maildir/new
check "two messages in alice's Maildir, owned by vmail" \
    bash -c "(( \$(find $maildir/new -type f -user vmail | wc -l) == 2 ))"

echo
echo "== read them over IMAP"
python3 - <<'PY'
import imaplib
with imaplib.IMAP4("127.0.0.1", 20143, timeout=30) as m:
    m.login("alice@example.test", "correct horse battery")
    typ, data = m.select("INBOX")
    assert typ == "OK" and int(data[0]) == 2, (typ, data)
    bodies = []
    for n in (b"1", b"2"):
        typ, fetched = m.fetch(n, "(BODY.PEEK[])")
        assert typ == "OK", typ
        bodies.append(fetched[0][1].decode())
    print("--- message 1 as imapd serves it ---")
    print(bodies[0])
    print("--- message 2 ---")
    print(bodies[1])
    both = "\n".join(bodies)
    assert "Subject: test-deb over SMTP" in both and "token-5f1c" in both, "SMTP message"
    assert "Subject: test-deb via sendmail" in both and "token-77ab" in both, "sendmail message"
    assert "Received: from local uid 65534" in both, "sendmail's caller recorded"
    m.logout()
print("IMAP: both messages read")
PY
ok "both messages read over IMAP"

echo
echo "== stop the daemons, dpkg --purge"
for d in imapd smtpd lmtp-deliver authd; do
    kill -TERM "$(cat /tmp/$d.pid)" 2>/dev/null || true
done
# Any of them still running (zombies waiting for their parent runuser to be reaped are not).
alive() { ps -C authd,lmtp-deliver,smtpd,imapd -o stat= | grep -qv '^Z'; }
for _ in $(seq 1 100); do
    alive || break
    sleep 0.1
done
check "the daemons stopped on SIGTERM" bash -c "$(declare -f alive); ! alive"
# The admin's TLS files are theirs: purge leaves /etc/postern then (and says so).
rm -rf /etc/postern/tls
dpkg --purge postern 2>&1 | tee /tmp/dpkg-purge.log
check "dpkg --purge: postern unknown to dpkg" bash -c '! dpkg-query -W -f "\${Status}" postern 2>/dev/null | grep -q installed'
for f in /usr/bin/authd /usr/bin/lmtp-deliver /usr/bin/smtpd /usr/bin/imapd /usr/bin/mailctl /usr/sbin/sendmail \
    /usr/bin/mailq /usr/lib/sendmail /lib/systemd/system/postern.target /usr/share/postern /etc/postern /var/lib/postern; do
    check "purged: $f" test ! -e "$f" -a ! -L "$f"
done
check "purged: sendmail's statoverride" bash -c '! dpkg-statoverride --list /usr/sbin/sendmail >/dev/null'
check "kept: the mail in /var/vmail" test -d $maildir/new

echo
echo "== a config that names the host before the install: the units get enabled"
install -d /etc/postern
sed 's/^hostname = "mail.example.org"/hostname = "mail.example.test"/' \
    <(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/postern/postern.toml.example) >$CONF
dpkg -i "$deb" >/tmp/dpkg-install2.log 2>&1 || { cat /tmp/dpkg-install2.log; die "dpkg -i with a configured host failed"; }
check "configured: the config the admin wrote is kept" grep -q '^hostname = "mail.example.test"' $CONF
check "configured: $CONF made 0640 root:postdrop" has_perms $CONF "640 root:postdrop"
check "configured: postern.target enabled" test -L /etc/systemd/system/multi-user.target.wants/postern.target
check "configured: no 'NOT started' message" bash -c '! grep -q "NOT started" /tmp/dpkg-install2.log'
dpkg --purge postern >/tmp/dpkg-purge2.log 2>&1 || { cat /tmp/dpkg-purge2.log; die "second purge failed"; }
check "purged: postern.target no longer enabled" test ! -e /etc/systemd/system/multi-user.target.wants/postern.target
