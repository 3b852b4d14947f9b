//! Mail-client autoconfiguration end to end: authd + smtpd with `[autoconfig] listen`;
//! Python's urllib fetches Thunderbird's and Outlook's documents and ElementTree checks
//! them at schema level; malformed and oversized requests are refused and the listener
//! keeps serving.

use postern_e2e::{Postern, describe_output, run_python};

const CHECK: &str = r#"
import socket, sys, urllib.request, urllib.error
import xml.etree.ElementTree as ET
host, port, host_name, subs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
base = "http://%s:%d" % (host, port)

def get(path, data=None, method=None):
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "text/xml")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers

def raw(data):
    s = socket.create_connection((host, port), timeout=20)
    try:
        s.sendall(data)
    except OSError:
        pass
    out = b""
    while True:
        try:
            chunk = s.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    s.close()
    return out.split(b"\r\n", 1)[0].decode()

def thunderbird(path):
    st, body, headers = get(path + "?emailaddress=alice%2Btag%40example.org")
    assert st == 200, (path, st, body)
    assert headers["Content-Type"].startswith("application/xml"), headers["Content-Type"]
    root = ET.fromstring(body)
    assert root.tag == "clientConfig" and root.get("version") == "1.1", root.attrib
    prov = root.find("emailProvider")
    assert prov is not None and prov.get("id") == "example.org", prov
    assert [d.text for d in prov.findall("domain")] == ["example.org"]
    def servers(tag, kind):
        out = []
        for s in prov.findall(tag):
            if s.get("type") != kind:
                continue
            kids = {c.tag: c.text for c in s}
            for k in ("hostname", "port", "socketType", "username", "authentication"):
                assert k in kids, (tag, kind, k, kids)
            assert kids["hostname"] == host_name, kids
            assert kids["username"] == "%EMAILADDRESS%", kids
            assert kids["authentication"] == "password-cleartext", kids
            out.append((int(kids["port"]), kids["socketType"]))
        return out
    assert servers("incomingServer", "imap") == [(993, "SSL"), (143, "STARTTLS")], servers("incomingServer", "imap")
    assert servers("incomingServer", "pop3") == [(995, "SSL"), (110, "STARTTLS")], servers("incomingServer", "pop3")
    smtp = servers("outgoingServer", "smtp")
    assert smtp[0] == (int(subs), "SSL"), smtp
    assert [t for _, t in smtp] == ["SSL", "STARTTLS"], smtp

thunderbird("/mail/config-v1.1.xml")
thunderbird("/.well-known/autoconfig/mail/config-v1.1.xml")

POX = ('<?xml version="1.0" encoding="utf-8"?>'
       '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
       '<Request><EMailAddress>%s</EMailAddress>'
       '<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>'
       '</Request></Autodiscover>')
A = "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}"
O = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"
for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
    st, body, _ = get(path, (POX % "bob@Example.org").encode())
    assert st == 200, (path, st, body)
    root = ET.fromstring(body)
    assert root.tag == A + "Autodiscover", root.tag
    acct = root.find(O + "Response/" + O + "Account")
    assert acct is not None, body
    assert acct.findtext(O + "AccountType") == "email"
    assert acct.findtext(O + "Action") == "settings"
    protos = {}
    for p in acct.findall(O + "Protocol"):
        kids = {c.tag[len(O):]: c.text for c in p}
        for k in ("Type", "Server", "Port", "SSL", "LoginName"):
            assert k in kids, (k, kids)
        assert kids["Server"] == host_name, kids
        assert kids["LoginName"] == "bob@example.org", kids
        protos[kids["Type"]] = kids
    assert set(protos) == {"IMAP", "SMTP", "POP3"}, protos
    assert (protos["IMAP"]["Port"], protos["IMAP"]["SSL"]) == ("993", "on"), protos["IMAP"]
    assert (protos["SMTP"]["Port"], protos["SMTP"]["SSL"]) == (subs, "on"), protos["SMTP"]
    assert (protos["POP3"]["Port"], protos["POP3"]["SSL"]) == ("995", "on"), protos["POP3"]

# Not our domain; not our path; wrong method; no address; bad address.
assert get("/mail/config-v1.1.xml?emailaddress=alice%40other.example")[0] == 404
assert get("/autodiscover/autodiscover.xml", (POX % "x@other.example").encode())[0] == 404
assert get("/index.html")[0] == 404
st, _, headers = get("/mail/config-v1.1.xml?emailaddress=a%40example.org", b"x", "POST")
assert st == 405 and headers["Allow"] == "GET", st
assert get("/autodiscover/autodiscover.xml")[0] == 405
assert get("/autodiscover/autodiscover.xml", b"<Request></Request>")[0] == 400
assert get("/mail/config-v1.1.xml")[0] == 400
assert get("/mail/config-v1.1.xml?emailaddress=%3Cscript%3E%40example.org")[0] == 400

# Malformed and oversized requests, then the server still answers.
assert raw(b"GARBAGE\r\n\r\n") == "HTTP/1.1 400 Bad Request", raw(b"GARBAGE\r\n\r\n")
assert raw(b"GET /mail/config-v1.1.xml HTTP/1.1\r\nno colon here\r\n\r\n").startswith("HTTP/1.1 400")
big = b"GET /mail/config-v1.1.xml HTTP/1.1\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n"
assert raw(big).startswith("HTTP/1.1 413"), raw(big)
post = b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"
assert raw(post).startswith("HTTP/1.1 413"), raw(post)
st, body, _ = get("/mail/config-v1.1.xml?emailaddress=alice%40example.org")
assert st == 200 and ET.fromstring(body).tag == "clientConfig", st
print("AUTOCONFIG OK")
"#;

#[test]
fn autoconfig_serves_thunderbird_and_outlook() {
    let pm = Postern::builder()
        .hostname("mail.example.org")
        .set("autoconfig.listen", vec!["127.0.0.1:0"])
        // imapd is not started here: its configured ports are only announced.
        .set("imapd.imap", vec!["0.0.0.0:143"])
        .set("imapd.imaps", vec!["0.0.0.0:993"])
        .set("imapd.pop3", vec!["0.0.0.0:110"])
        .set("imapd.pop3s", vec!["0.0.0.0:995"])
        .daemons(&["authd", "smtpd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    let smtpd = pm.daemon("smtpd");
    let http = smtpd.listening_addrs_matching("(autoconfig)")[0];
    let subs = smtpd.listening_addrs_matching("(submissions)")[0];
    let out = run_python(
        CHECK,
        &[
            &http.ip().to_string(),
            &http.port().to_string(),
            "mail.example.org",
            &subs.port().to_string(),
        ],
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("AUTOCONFIG OK"),
        "{}",
        describe_output(&out)
    );
}
