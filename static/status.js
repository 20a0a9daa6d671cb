// The status line: connection state, display lag and frame rate.

/** What each close code means to a visitor (docs/protocol.md, "Close codes"). */
const REASONS = {
  1006: "connection lost",
  1011: "server error",
  1012: "server restarting",
  1013: "server busy",
};
/** 1013 has two documented reasons (docs/protocol.md, "Connecting"): full, or still starting. */
const NOT_READY = "server not ready";

/**
 * Display lag (pen → its frame, ms) past which the status warns: amber, then red (issue 12). Every text stays
 * short enough for one line on a 390 px phone ("Very slow connection · 12.5 s · 60 fps").
 */
export const SLOW_LAG_MS = 150;
export const VERY_SLOW_LAG_MS = 500;

/** A lag in words: "320 ms", "2.1 s". */
function duration(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * The status text and its tone ("ok", "wait", "stop").
 * @param {{status: string, retryInMs: number|null, code: number|null, reason?: string}} connection
 * @param {{lagMs: number|null, fps: number}} stats  lagMs: how far the display trails the pen (socket.js)
 * @returns {{text: string, tone: string}}
 */
export function describeStatus(connection, stats) {
  switch (connection.status) {
    case "open": {
      const lag = stats.lagMs;
      if (lag !== null && lag > VERY_SLOW_LAG_MS) {
        return { text: `Very slow connection · ${duration(lag)} · ${stats.fps} fps`, tone: "stop" };
      }
      if (lag !== null && lag > SLOW_LAG_MS) {
        return { text: `Slow connection · ${duration(lag)} · ${stats.fps} fps`, tone: "wait" };
      }
      return { text: `Live · ${lag === null ? "– ms" : duration(lag)} · ${stats.fps} fps`, tone: "ok" };
    }
    case "connecting":
      return { text: "Connecting…", tone: "wait" };
    case "reconnecting": {
      const starting = connection.code === 1013 && connection.reason === NOT_READY;
      const reason = starting ? "server starting" : REASONS[connection.code] ?? "connection lost";
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
 * frame on screen, or of a later refused message (which no frame answers; its notice shows): when
 * frame-seq ≥ sent-seq the page shows everything the visitor did (the browser tests wait on this).
 * @param {{line: HTMLElement, notice: HTMLElement}} elements
 */
export function renderStatus(elements, connection, stats, notice, frame) {
  const { text, tone } = describeStatus(connection, stats);
  elements.line.textContent = text;
  elements.line.dataset.tone = tone;
  elements.line.dataset.status = connection.status;
  elements.line.dataset.sentSeq = String(stats.sentSeq);
  elements.line.dataset.frameSeq = String(Math.max(frame?.seq ?? 0, stats.refusedSeq ?? 0));
  elements.line.dataset.lagMs = stats.lagMs === null ? "" : String(Math.round(stats.lagMs));
  elements.notice.textContent = notice ? notice.text : "";
  elements.notice.hidden = !notice;
}
