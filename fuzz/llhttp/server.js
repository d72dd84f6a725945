// The llhttp side of the differential run (fuzz/llhttp): Node's http server,
// strict parsing (insecureHTTPParser false, the default), on 127.0.0.1 port 0.
// Prints the port on stdout, then serves until stdin closes.
//
// Every request is answered once its body has ended: 200, empty, with
// X-N: <requests seen on this connection> and X-Len: <body bytes received>;
// a parse error is answered 400 with the llhttp error code as the body
// (HPE_INVALID_EOF_STATE: the input ended inside a message), then the
// connection closes. The client half-closes after sending, so that llhttp
// sees the end of input (httpAllowHalfOpen keeps the answers flowing).
'use strict';
const http = require('http');

// Ends the connection once every complete request is answered: with the
// 400 if the parser failed, else (after the client's half-close) plainly.
function maybeFinish(s) {
    if (s.finished) return;
    const complete = s.reqs.filter((r) => r.complete).length;
    if (s.answered < complete) return;
    if (s.errCode !== undefined) {
        s.finished = true;
        const code = s.errCode;
        if (s.writable) {
            s.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: ${code.length}\r\n\r\n${code}`);
        } else {
            s.destroy();
        }
    } else if (s.eof && s.reqs.length === complete) {
        s.finished = true;
        s.end();
    }
}

const server = http.createServer({ insecureHTTPParser: false }, (req, res) => {
    const sock = req.socket;
    sock.reqs.push(req);
    const n = sock.reqs.length;
    let len = 0;
    req.on('data', (d) => { len += d.length; });
    req.on('end', () => {
        // In header fields, so that a response to HEAD carries them too.
        res.writeHead(200, { 'Content-Length': 0, 'X-N': n, 'X-Len': len });
        res.end(() => {
            sock.answered += 1;
            maybeFinish(sock);
        });
    });
    req.on('error', () => {});
});
server.httpAllowHalfOpen = true;
server.on('connection', (sock) => {
    sock.reqs = [];
    sock.answered = 0;
    sock.on('end', () => {
        sock.eof = true;
        setImmediate(() => maybeFinish(sock));
    });
    sock.on('error', () => {});
});
server.on('clientError', (err, socket) => {
    if (socket.reqs === undefined) {
        socket.destroy();
        return;
    }
    socket.errCode = String(err.code || 'ERR');
    maybeFinish(socket);
});
server.on('checkExpectation', (req, res) => {
    req.socket.reqs.push(req);
    res.writeHead(417, { 'Content-Length': 0, Connection: 'close' });
    res.end(() => { req.socket.answered += 1; maybeFinish(req.socket); });
});
// No 'upgrade' listener: Node then serves an Upgrade request as a plain
// request (as Stoat's Conn reads it). CONNECT has no such fallback.
for (const ev of ['connect']) {
    server.on(ev, (req, socket) => {
        socket.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: ${ev.length}\r\n\r\n${ev}`);
    });
}
server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${server.address().port}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
