// Bring your own digit: a photo (a phone's camera) or an image file (a laptop's file picker or a drop on
// the pad), scaled down here so its `photo` message fits the server's message limit (docs/protocol.md,
// "photo"); the server prepares it as MNIST was made. A photo on the page is plain data in the state:
// {data: base64 JPEG sent | null, input: Uint8Array(side²) the server's 28 × 28 input | null, preview:
// data URL of what was sent | null}. A share link or a data file carries only `input`.

/** The longer side a photo is scaled to before sending: ample for a digit, ~20–40 KB as JPEG. */
export const PAGE_SIDE_PX = 640;
/** JPEG qualities tried in turn, then smaller sides, until the message fits. */
const QUALITIES = [0.85, 0.7, 0.55];
const SHRINK = 0.75;
const MIN_SIDE_PX = 160;
/** Room in the message for everything but the base64 data (type, seq, field names). */
const ENVELOPE_BYTES = 128;

function bytesToBase64(bytes) {
  let text = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(start, start + 0x8000));
  }
  return btoa(text);
}

/** Base64 of a u8 array, for the `input` form of the message and for export. */
export const encodeInput = bytesToBase64;

/** The bytes of a base64 string; throws on anything else. */
export function decodeBase64(text) {
  return Uint8Array.from(atob(text), (char) => char.charCodeAt(0));
}

/** A frame's decoded `input` (values in [0, 1]) as the bytes the server sent (u8, scale 1/255). */
export function inputBytes(input) {
  return Uint8Array.from(input.values, (value) => Math.round(value * 255));
}

async function jpeg(canvas, quality) {
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
  if (!blob) throw new Error("This picture could not be encoded.");
  return new Uint8Array(await blob.arrayBuffer());
}

/**
 * A photo or picture file, scaled down (its longer side at most PAGE_SIDE_PX and the server's limit)
 * and re-encoded as JPEG until its message fits `maxMessageBytes`.
 * @param {File} file
 * @param {{maxMessageBytes: number, maxSidePx: number}} limits  welcome.limits
 * @returns {Promise<{data: string, preview: string}>}  base64 JPEG; a data URL of it for the pad
 * @throws {Error} with a sentence for the visitor: not an image, or too large even scaled down
 */
export async function scalePhoto(file, { maxMessageBytes, maxSidePx }) {
  if (!file.type.startsWith("image/")) throw new Error(`${file.name} is not an image: choose a photo or a picture file (JPEG, PNG, …).`);
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" }); // upright as the camera held it
  } catch (error) {
    throw new Error(`${file.name} could not be read as an image: choose a photo or a picture file (JPEG, PNG, …).`);
  }
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d");
  let side = Math.min(PAGE_SIDE_PX, maxSidePx, Math.max(bitmap.width, bitmap.height));
  while (side >= MIN_SIDE_PX) {
    const scale = side / Math.max(bitmap.width, bitmap.height);
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    context.fillStyle = "#ffffff"; // a transparent PNG's background reads as paper
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    for (const quality of QUALITIES) {
      const data = bytesToBase64(await jpeg(canvas, quality));
      if (data.length + ENVELOPE_BYTES <= maxMessageBytes) return { data, preview: `data:image/jpeg;base64,${data}` };
    }
    side = Math.floor(side * SHRINK);
  }
  throw new Error(`${file.name} is too detailed to send even scaled down to ${MIN_SIDE_PX} px (limit: ${Math.round(maxMessageBytes / 1024)} KiB a message).`);
}

/**
 * The `photo` message restoring `photo` (reconnect, a share link, a data file): the server's 28 × 28 input
 * once known, else the image data sent.
 * @param {{data: string|null, input: Uint8Array|null}} photo
 */
export function photoMessage(photo) {
  const side = photo.input ? Math.round(Math.sqrt(photo.input.length)) : 0;
  if (photo.input) return { type: "photo", input: { dtype: "u8", shape: [side, side], data: bytesToBase64(photo.input) } };
  return { type: "photo", data: photo.data };
}

const previews = new Map(); // data URL → loaded <img>, so a redraw paints at once

/**
 * Paint `photo` over the whole pad: the picture sent when there is one, else the model's input
 * (a share link or file), smoothed as ink on paper. Calls `onReady` once a picture still loading is ready.
 * @param {CanvasRenderingContext2D} context
 * @param {{input: Uint8Array|null, preview: string|null}} photo
 * @param {() => void} onReady
 */
export function paintPhoto(context, photo, onReady) {
  const { width, height } = context.canvas;
  if (photo.preview) {
    let image = previews.get(photo.preview);
    if (!image) {
      image = new Image();
      image.addEventListener("load", onReady, { once: true });
      image.src = photo.preview;
      previews.clear(); // one photo on the pad at a time
      previews.set(photo.preview, image);
    }
    if (!image.complete || !image.naturalWidth) return;
    const scale = Math.min(width / image.naturalWidth, height / image.naturalHeight);
    const [w, h] = [image.naturalWidth * scale, image.naturalHeight * scale];
    context.drawImage(image, (width - w) / 2, (height - h) / 2, w, h);
    return;
  }
  if (!photo.input) return;
  const side = Math.round(Math.sqrt(photo.input.length));
  const small = document.createElement("canvas");
  [small.width, small.height] = [side, side];
  const pixels = small.getContext("2d").createImageData(side, side);
  photo.input.forEach((ink, i) => {
    const paper = 255 - ink;
    pixels.data.set([paper, paper, paper, 255], i * 4);
  });
  small.getContext("2d").putImageData(pixels, 0, 0);
  context.imageSmoothingEnabled = true;
  context.drawImage(small, 0, 0, width, height);
}
