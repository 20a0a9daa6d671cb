// The protocol client of docs/protocol.md: one WebSocket, `seq` numbering,
// reconnect with jittered backoff and replay, acknowledgement of painted
// frames (flow control), display lag and frame rate.
// Never touches the DOM: it reports through the callbacks it is given.

/** Close codes after which reconnecting is safe (docs/protocol.md, "Close codes"). */
const RECONNECT_CODES = new Set([
  1006, // abnormal closure: the connection dropped (RFC 6455 §7.1.5)
  1011, // internal error: inference failed for this visitor
  1012, // service restart
  1013, // try again later: the server is at capacity
]);
/**
 * Client messages a `frame` answers (docs/protocol.md): only these are waited for by the display lag.
 * `compare`, `sanity` and `counterfactual` get an answer of their own, and no frame may ever follow
 * them: counted, they turned the status red after every pause on a 13 ms loopback (issue 26).
 */
const FRAME_ANSWERED = new Set(["stroke", "select", "configure", "clear", "undo", "photo"]);

/** Whether a frame answers a client message of `type` (the status line waits only for those). */
export function answeredByFrame(type) {
  return FRAME_ANSWERED.has(type);
}

/** 1000 normal closure: the server closed an idle visitor; we reconnect on the next touch. */
const IDLE_CODE = 1000;

/** Backoff before reconnect attempt n (0-based): base·2ⁿ capped, with "equal jitter". */
export const BACKOFF = { baseMs: 250, capMs: 8000 };

/**
 * Delay before reconnect attempt `attempt`: half of the exponential step
 * fixed, half random, so a restarted server is not hit by every visitor in
 * the same millisecond (Brooker, "Exponential Backoff And Jitter", AWS
 * Architecture Blog, 2015).
 * @param {number} attempt 0-based
 * @param {() => number} random uniform in [0, 1)
 * @returns {number} ms
 */
export function backoffMs(attempt, random = Math.random) {
  const step = Math.min(BACKOFF.capMs, BACKOFF.baseMs * 2 ** attempt);
  return step / 2 + random() * (step / 2);
}

/**
 * Open the connection and keep it open.
 * @param {object} options
 * @param {string} options.url                      ws[s]://host/ws
 * @param {(message: object) => void} options.onMessage   every server message, parsed
 * @param {(connection: object) => void} options.onConnection  {status, retryInMs, code, reason?}
 * @param {(welcome: object) => object[]} options.replay   messages (without seq) to send
 *        after a connection's first welcome, to restore the drawing and selection
 * @param {(seq: number, message: object) => void} options.onSent   every message sent, replays included
 * @returns {{send: (message: object) => (number|null), painted: (frame: object) => void, wake: () => void,
 *            stats: () => object}}
 */
export function createSocket({ url, onMessage, onConnection, replay, onSent }) {
  let ws = null;
  let seq = 0;
  let attempt = 0;
  let retryTimer = null;
  let welcomed = false;
  let replayedSeq = 0; // seq of the last replayed message: earlier frames show the server's fresh state
  const sentAt = new Map(); // seq → performance.now() when sent, until a frame reflects it (frame-answered only)
  let lastLagMs = null; // sending the newest message a frame reflects → receiving that frame
  const frameTimes = [];
  let frames = 0;
  let receivedFrame = 0; // the highest `frame` number received on this connection (numbers restart per connection)
  let ackedFrame = 0;

  function report(status, extra = {}) {
    onConnection({ status, retryInMs: null, code: null, ...extra });
  }

  function connect() {
    retryTimer = null;
    welcomed = false;
    receivedFrame = 0;
    ackedFrame = 0;
    report(attempt === 0 ? "connecting" : "reconnecting");
    ws = new WebSocket(url);
    ws.addEventListener("message", receive);
    ws.addEventListener("close", closed);
  }

  function receive(event) {
    const message = JSON.parse(event.data);
    if (message.type === "frame") measure(message.seq);
    if (message.type === "frame" && message.frame) receivedFrame = Math.max(receivedFrame, message.frame);
    if (message.type === "welcome" && !welcomed) {
      welcomed = true;
      attempt = 0;
      report("open");
      onMessage(message);
      replayedSeq = 0;
      for (const next of replay(message)) replayedSeq = send(next) ?? replayedSeq;
      return;
    }
    // A frame from before the replay shows a blank drawing, not the visitor's: it would flash a
    // wrong reading for a moment after every reconnect. If the server refused the last replayed
    // message, no frame will ever reach its seq: stop waiting for one.
    if (message.type === "error" && message.seq === replayedSeq) replayedSeq = 0;
    if (message.type === "error") sentAt.delete(message.seq); // a refused message gets no frame
    if (message.type === "frame" && (message.seq ?? 0) < replayedSeq) {
      painted(message); // never shown: acknowledged at once, or the server would hold frames for it
      return;
    }
    onMessage(message);
  }

  function measure(frameSeq) {
    const now = performance.now();
    if (frameSeq !== null && sentAt.has(frameSeq)) lastLagMs = now - sentAt.get(frameSeq);
    // Latest-wins: a frame answers every seq up to its own (docs/protocol.md, "frame").
    for (const key of sentAt.keys()) if (frameSeq !== null && key <= frameSeq) sentAt.delete(key);
    frames += 1;
    frameTimes.push(now);
    while (frameTimes.length && frameTimes[0] < now - 1000) frameTimes.shift();
  }

  function closed(event) {
    ws = null;
    sentAt.clear();
    if (RECONNECT_CODES.has(event.code)) {
      const delay = backoffMs(attempt);
      attempt += 1;
      report("reconnecting", { retryInMs: delay, code: event.code, reason: event.reason });
      retryTimer = setTimeout(connect, delay);
    } else if (event.code === IDLE_CODE) {
      report("idle", { code: event.code });
    } else {
      // 1003, 1007, 1008, 1009: the server refused how we spoke; retrying
      // would repeat it. The visitor can still reconnect by touching the page.
      report("closed", { code: event.code });
    }
  }

  /**
   * Send a client message with the next `seq`.
   * @returns {number|null} its seq, or null when not connected (the state
   *   keeps the drawing and selection; they are replayed on reconnect)
   */
  function send(message) {
    if (!ws || ws.readyState !== WebSocket.OPEN || !welcomed) return null;
    seq += 1; // seq increases strictly on the connection (docs/protocol.md)
    if (answeredByFrame(message.type)) sentAt.set(seq, performance.now());
    ws.send(JSON.stringify({ ...message, seq }));
    onSent(seq, message);
    return seq;
  }

  /**
   * The page painted `frame` (a `frame` message, decoded or not): acknowledge it (docs/protocol.md, "ack"),
   * and with it every earlier frame. Frames of an older connection, or acknowledged already, are skipped.
   */
  function painted(frame) {
    const number = frame.frame;
    if (!number || number <= ackedFrame || number > receivedFrame || !ws || ws.readyState !== WebSocket.OPEN) return;
    ackedFrame = number;
    ws.send(JSON.stringify({ type: "ack", frame: number })); // no seq: an ack changes nothing a frame shows
  }

  /** Reconnect now after an idle or refused close. A pending backoff wait is kept: every tap
   *  skipping it would undo the jitter that spreads visitors over a restarted or full server. */
  function wake() {
    if (ws || retryTimer !== null) return;
    attempt = 0;
    connect();
  }

  /**
   * {lagMs, fps: frames in the last second, frames}. `lagMs`, the display lag: how far what is shown trails
   * the pen, i.e. the wait of the oldest message no frame reflects yet, else the last frame's lag (sending the
   * newest message it reflects → receiving it); null before any.
   */
  function stats() {
    const now = performance.now();
    while (frameTimes.length && frameTimes[0] < now - 1000) frameTimes.shift();
    const oldest = sentAt.size ? sentAt.values().next().value : null; // a Map keeps insertion order
    return {
      lagMs: oldest === null ? lastLagMs : Math.max(lastLagMs ?? 0, now - oldest),
      fps: frameTimes.length,
      frames,
    };
  }

  connect();
  return { send, painted, wake, stats };
}
