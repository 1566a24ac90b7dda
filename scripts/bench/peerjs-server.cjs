// PeerJS server (npm `peer`) for scripts/bench.sh: PeerServer({port, path: '/'}) on
// 127.0.0.1, with the concurrent-user limit raised above the idle scenario's size.
// Usage: NODE_PATH=<dir>/node_modules node peerjs-server.cjs PORT
const { PeerServer } = require("peer");
const port = Number(process.argv[2] || 9000);
PeerServer({ port, host: "127.0.0.1", path: "/", concurrent_limit: 1000000 }, () => {
  console.error(`peerjs listening on 127.0.0.1:${port}`);
});
