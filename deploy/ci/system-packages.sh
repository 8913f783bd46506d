#!/usr/bin/env bash
# The Debian programs the tests drive as real clients: mpop (POP3 over STLS and POP3S), swaks
# (SMTP, STARTTLS, AUTH; with Net::SSLeay for TLS), openssl (test certificates), opendkim (an
# independent DKIM verifier), rspamd (the content filter smtpd asks at the end of DATA) and
# chromium with chromium-driver (the admin pages in a real browser, issue 14), isync (mbsync) and
# offlineimap3 (IMAP clients that sync a Maildir both ways, issue 13). Installed with
# apt-get where missing and we are root; otherwise the tests that need them say what is missing.
set -euo pipefail
PACKAGES=(mpop swaks openssl rspamd)
missing=()
for p in "${PACKAGES[@]}"; do
  command -v "$p" >/dev/null || missing+=("$p")
done
# opendkim: the milter binary verifies DKIM signatures in tests, independently of dkimpy
command -v opendkim >/dev/null || [ -x /usr/sbin/opendkim ] || missing+=(opendkim)
# imapd's reference (#13): Debian's Dovecot IMAP server, whose program is `dovecot`
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-imapd)
# chromium and chromium-driver: the admin pages walked through in a real headless browser
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# imapd's real clients (#13): isync's program is `mbsync`, offlineimap3's is `offlineimap`
command -v mbsync >/dev/null || missing+=(isync)
command -v offlineimap >/dev/null || missing+=(offlineimap3)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: ${missing[*]} missing and not installable here; tests that need them will say so"
  exit 0
fi
echo "installing ${missing[*]}"
apt-get update -q >/dev/null
[[ " ${missing[*]} " == *" swaks "* ]] && missing+=(libnet-ssleay-perl)
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
