// The status line: connection state, frame latency and frame rate.

/** What each close code means to a visitor (docs/protocol.md, "Close codes"). */
const REASONS = {
  1006: "connection lost",
  1011: "server error",
  1012: "server restarting",
  1013: "server busy",
};

/**
 * The status text and its tone ("ok", "wait", "stop").
 * @param {{status: string, retryInMs: number|null, code: number|null}} connection
 * @param {{latencyMs: number|null, fps: number}} stats
 * @returns {{text: string, tone: string}}
 */
export function describeStatus(connection, stats) {
  switch (connection.status) {
    case "open": {
      const latency = stats.latencyMs === null ? "– ms" : `${Math.round(stats.latencyMs)} ms`;
      return { text: `Live · ${latency} · ${stats.fps} fps`, tone: "ok" };
    }
    case "connecting":
      return { text: "Connecting…", tone: "wait" };
    case "reconnecting": {
      const reason = REASONS[connection.code] ?? "connection lost";
      return { text: `Reconnecting… (${reason}) · your drawing is kept`, tone: "wait" };
    }
    case "idle":
      return { text: "Paused after a long break · draw to continue", tone: "wait" };
    default:
      return { text: `Disconnected (code ${connection.code}) · draw to reconnect`, tone: "stop" };
  }
}

/**
 * Render the status line and the last notice. The line also carries, as data
 * attributes, the connection state, the last `seq` sent and the `seq` of the
 * frame on screen: when frame-seq ≥ sent-seq the page shows everything the
 * visitor did (the browser tests wait on this).
 * @param {{line: HTMLElement, notice: HTMLElement}} elements
 */
export function renderStatus(elements, connection, stats, notice, frame) {
  const { text, tone } = describeStatus(connection, stats);
  elements.line.textContent = text;
  elements.line.dataset.tone = tone;
  elements.line.dataset.status = connection.status;
  elements.line.dataset.sentSeq = String(stats.sentSeq);
  elements.line.dataset.frameSeq = String(frame?.seq ?? 0);
  elements.notice.textContent = notice ? notice.text : "";
  elements.notice.hidden = !notice;
}
