// Turn what was drawn on the pad into the model's input, the way the UCI
// "Optical Recognition of Handwritten Digits" set (scikit-learn's load_digits)
// was made: 32x32 binary bitmaps, normalised so the digit fills the height
// with its aspect kept, then split into 4x4 blocks whose on-pixels are counted,
// giving an 8x8 grid of integers 0..16 (sent raw: the model divides by 16).
//
// A pure function of its arguments, so tests can check it against a Python
// reference of the same steps (tests/page_reference.py).

export const GRID = 8; // the model's input is GRID x GRID, row-major
export const BLOCK = 4; // each input value counts a BLOCK x BLOCK block
export const FRAME = GRID * BLOCK; // the 32x32 bitmap the counts come from
export const SUBSAMPLES = 4; // per frame pixel, SUBSAMPLES^2 points are read
export const INK_THRESHOLD = 128; // a pad pixel with ink >= this is "on"

// Round half up, the same in JavaScript and Python (Python's round() is not).
function roundHalfUp(value) {
  return Math.floor(value + 0.5);
}

// ink: one value 0..255 per pad pixel, row-major (the canvas alpha channel).
// Returns GRID*GRID integers 0..16, or null when nothing is drawn.
export function preprocess(ink, width, height) {
  let left = width;
  let right = -1;
  let top = height;
  let bottom = -1;
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      if (ink[y * width + x] >= INK_THRESHOLD) {
        left = Math.min(left, x);
        right = Math.max(right, x);
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
      }
    }
  }
  if (right < 0) {
    return null;
  }
  // Crop to the ink, scale so the digit is FRAME tall (or FRAME wide if it is
  // wider than tall), keep the aspect and centre it in the frame.
  const boxWidth = right - left + 1;
  const boxHeight = bottom - top + 1;
  const scale = FRAME / Math.max(boxWidth, boxHeight);
  const outWidth = Math.max(1, Math.min(FRAME, roundHalfUp(boxWidth * scale)));
  const outHeight = Math.max(1, Math.min(FRAME, roundHalfUp(boxHeight * scale)));
  const offsetX = Math.floor((FRAME - outWidth) / 2);
  const offsetY = Math.floor((FRAME - outHeight) / 2);

  // Binarise: a frame pixel is on when most of the pad points under it are.
  const frame = new Uint8Array(FRAME * FRAME);
  const points = SUBSAMPLES * SUBSAMPLES;
  for (let ty = 0; ty < outHeight; ty += 1) {
    for (let tx = 0; tx < outWidth; tx += 1) {
      let on = 0;
      for (let sy = 0; sy < SUBSAMPLES; sy += 1) {
        const py = top + Math.floor(((ty + (sy + 0.5) / SUBSAMPLES) * boxHeight) / outHeight);
        for (let sx = 0; sx < SUBSAMPLES; sx += 1) {
          const px = left + Math.floor(((tx + (sx + 0.5) / SUBSAMPLES) * boxWidth) / outWidth);
          if (ink[py * width + px] >= INK_THRESHOLD) {
            on += 1;
          }
        }
      }
      if (2 * on >= points) {
        frame[(offsetY + ty) * FRAME + offsetX + tx] = 1;
      }
    }
  }

  // Count the on-pixels of each BLOCK x BLOCK block.
  const counts = new Array(GRID * GRID).fill(0);
  for (let y = 0; y < FRAME; y += 1) {
    for (let x = 0; x < FRAME; x += 1) {
      counts[Math.floor(y / BLOCK) * GRID + Math.floor(x / BLOCK)] += frame[y * FRAME + x];
    }
  }
  return counts;
}
