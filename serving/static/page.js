// The draw-a-digit page: a pointer-driven pad, the grid sent to the model, its
// answer and all ten probabilities. Every request goes to this page's origin:
// the model's description and the Open Inference Protocol infer route.

import { GRID, preprocess } from "./preprocess.js";

const PEN_FRACTION = 1 / 11; // pen width / pad height: ~1/8 of a digit's height
const SAMPLES_URL = "/static/samples.json";

const pad = document.getElementById("pad");
const context = pad.getContext("2d", { willReadFrequently: true });
const statusLine = document.getElementById("status");
const grid = document.getElementById("grid");
const predictionText = document.getElementById("prediction");
const confidenceText = document.getElementById("confidence");
const bars = document.getElementById("bars");

let model = null; // {name, input, output} from GET /v2/models/{name}
let samples = [];
let nextSample = 0;
let stroke = null; // the last point of the stroke being drawn
let showingSample = false;
let sent = 0; // inference requests sent so far
let latestRequest = 0; // the one whose answer to show; older answers are dropped

function say(message) {
  statusLine.textContent = message;
}

// One decimal, without claiming 0% or 100% for a probability that is neither.
function percent(probability) {
  if (probability > 0 && probability < 0.0005) {
    return "<0.1%";
  }
  if (probability < 1 && probability >= 0.9995) {
    return ">99.9%";
  }
  return `${(probability * 100).toFixed(1)}%`;
}

// --- The pad ---------------------------------------------------------------

function clearPad() {
  context.clearRect(0, 0, pad.width, pad.height);
  showingSample = false;
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * pad.width) / box.width,
    y: ((event.clientY - box.top) * pad.height) / box.height,
  };
}

function drawLine(from, to) {
  context.lineWidth = Math.round(pad.height * PEN_FRACTION);
  context.lineCap = "round";
  context.lineJoin = "round";
  context.strokeStyle = "#111827";
  context.beginPath();
  context.moveTo(from.x, from.y);
  context.lineTo(to.x, to.y);
  context.stroke();
}

function padInk() {
  const { data } = context.getImageData(0, 0, pad.width, pad.height);
  const ink = new Uint8Array(pad.width * pad.height);
  for (let index = 0; index < ink.length; index += 1) {
    ink[index] = data[index * 4 + 3]; // alpha: the pad is transparent where blank
  }
  return ink;
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  if (showingSample) {
    clearPad();
  }
  pad.setPointerCapture(event.pointerId);
  stroke = padPoint(event);
  drawLine(stroke, stroke); // a tap leaves a dot
});

pad.addEventListener("pointermove", (event) => {
  if (stroke === null) {
    return;
  }
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const each of events.length ? events : [event]) {
    const point = padPoint(each);
    drawLine(stroke, point);
    stroke = point;
  }
});

function endStroke() {
  if (stroke === null) {
    return;
  }
  stroke = null;
  predictDrawing();
}

pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

// --- Results -----------------------------------------------------------------

function buildResultViews() {
  for (let index = 0; index < GRID * GRID; index += 1) {
    const cell = document.createElement("span");
    cell.className = "cell";
    grid.append(cell);
  }
  for (let digit = 0; digit < 10; digit += 1) {
    const item = document.createElement("li");
    item.className = "bar-row";
    item.innerHTML =
      '<span class="bar-digit"></span><span class="bar-track" aria-hidden="true">' +
      '<span class="bar-fill"></span></span><span class="bar-value">–</span>';
    item.querySelector(".bar-digit").textContent = String(digit);
    bars.append(item);
  }
}

function showGrid(features) {
  grid.querySelectorAll(".cell").forEach((cell, index) => {
    const value = features ? features[index] : 0;
    cell.textContent = features ? String(value) : "";
    cell.style.setProperty("--ink", String(value / 16));
    cell.classList.toggle("dark", value >= 7); // white text where the cell is dark
  });
  const rows = [];
  for (let row = 0; features && row < GRID; row += 1) {
    rows.push(features.slice(row * GRID, (row + 1) * GRID).join(" "));
  }
  grid.setAttribute(
    "aria-label",
    features
      ? `The 8 by 8 grid sent to the model, row by row: ${rows.join("; ")}`
      : "The 8 by 8 grid sent to the model: nothing sent yet",
  );
}

function showProbabilities(probabilities) {
  const best = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
  predictionText.textContent = probabilities ? String(best) : "–";
  confidenceText.textContent = probabilities ? percent(probabilities[best]) : "–";
  bars.querySelectorAll(".bar-row").forEach((row, digit) => {
    const probability = probabilities ? probabilities[digit] : 0;
    row.querySelector(".bar-fill").style.width = percent(probability);
    row.querySelector(".bar-value").textContent = probabilities ? percent(probability) : "–";
    row.classList.toggle("best", digit === best);
    row.setAttribute("aria-label", `${digit}: ${probabilities ? percent(probability) : "no answer"}`);
  });
}

// --- Talking to the service ----------------------------------------------------

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) {
    throw new Error(body.error?.message ?? body.error ?? response.statusText);
  }
  return body;
}

async function loadModel() {
  const { models } = await getJson("/v2/models");
  const metadata = await getJson(`/v2/models/${encodeURIComponent(models[0])}`);
  return {
    name: metadata.name,
    input: metadata.inputs[0].name,
    output: metadata.outputs[0].name,
  };
}

async function infer(features) {
  const response = await fetch(`/v2/models/${encodeURIComponent(model.name)}/infer`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({
      inputs: [
        { name: model.input, shape: [1, features.length], datatype: "FP32", data: features },
      ],
      outputs: [{ name: model.output }],
    }),
  });
  const body = await response.json();
  if (!response.ok) {
    throw new Error(body.error);
  }
  return body.outputs[0].data;
}

// The number (1, 2, ...) of the request whose answer the page shows: a hook
// for tests and tools (data-answered on <main>), as each stroke sends one.
function answered(request) {
  document.querySelector("main").dataset.answered = String(request);
}

async function classify(features, what) {
  showGrid(features);
  if (model === null) {
    say("The model is not loaded yet; try again in a moment.");
    return;
  }
  sent += 1;
  const request = sent;
  latestRequest = request;
  say(`Asking the model about ${what}…`);
  try {
    const probabilities = await infer(features);
    if (request !== latestRequest) {
      return; // a newer drawing was sent meanwhile
    }
    showProbabilities(probabilities);
    answered(request);
    const best = predictionText.textContent;
    say(`The model reads ${what} as ${best}, with confidence ${confidenceText.textContent}.`);
  } catch (error) {
    if (request === latestRequest) {
      showProbabilities(null);
      say(`The service could not answer: ${error.message}`);
      answered(request);
    }
  }
}

function predictDrawing() {
  const features = preprocess(padInk(), pad.width, pad.height);
  if (features === null) {
    latestRequest = 0; // drop any answer still on its way
    showGrid(null);
    showProbabilities(null);
    say("The pad is empty: draw a digit first. Nothing was sent.");
    return;
  }
  classify(features, showingSample ? "the test digit" : "your drawing");
}

// --- Controls ----------------------------------------------------------------

function drawSample(features) {
  clearPad();
  const cell = pad.width / GRID;
  features.forEach((value, index) => {
    context.fillStyle = `rgba(17, 24, 39, ${value / 16})`;
    context.fillRect((index % GRID) * cell, Math.floor(index / GRID) * cell, cell, cell);
  });
  showingSample = true;
}

document.getElementById("sample").addEventListener("click", () => {
  if (samples.length === 0) {
    say("No test digits are available.");
    return;
  }
  const sample = samples[nextSample % samples.length];
  nextSample += 1;
  drawSample(sample.features);
  classify(sample.features, `a test-set ${sample.label}`);
});

document.getElementById("predict").addEventListener("click", () => {
  if (showingSample) {
    const sample = samples[(nextSample - 1) % samples.length];
    classify(sample.features, `a test-set ${sample.label}`);
    return;
  }
  predictDrawing();
});

document.getElementById("clear").addEventListener("click", () => {
  latestRequest = 0; // drop any answer still on its way
  clearPad();
  showGrid(null);
  showProbabilities(null);
  say("Cleared. Draw a digit.");
});

// --- Start ---------------------------------------------------------------------

buildResultViews();
showProbabilities(null);
Promise.all([loadModel(), getJson(SAMPLES_URL)])
  .then(([loaded, shipped]) => {
    model = loaded;
    samples = shipped;
    say(`Ready: draw a digit, or show a test digit. Model ${model.name}.`);
  })
  .catch((error) => say(`The service is not available: ${error.message}`));
