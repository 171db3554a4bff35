// The page's one way to the service: the public API with the key in the Authorization header,
// presigned uploads (no key sent there), and a job's server-sent events read through fetch
// (EventSource cannot send an Authorization header, and the key never goes into a URL).

const KEY = "cmet.key";

export const apiKey = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

/** A problem+json answer: `code` is the API's machine-readable code. */
export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

function authorization() {
  return { Authorization: `Bearer ${apiKey.get()}` };
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return new ApiError(response.status, body?.code || "http_error", body?.detail || response.statusText);
}

/** Call the API; JSON in and out. `form`: a FormData body; `headers`: extra headers. */
export async function api(path, { method = "GET", json, form, headers = {}, signal } = {}) {
  const init = { method, headers: { ...authorization(), ...headers }, signal, cache: "no-store" };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", "the service cannot be reached");
  }
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

/** Why an upload failed before any answer: a URL of another origin is most likely blocked by the browser. */
function uploadFailure(url) {
  const target = new URL(url, location.href).origin;
  if (target === location.origin) return new ApiError(0, "network", "the upload was interrupted");
  return new ApiError(
    0,
    "upload_blocked",
    `the upload to ${target} was blocked or could not connect; this page is open at ${location.origin}, ` +
      `another origin, which the browser refuses unless ${target} allows it. Open the page at ${target}, ` +
      `or set CMET_PUBLIC_URL to the address you open (README, "The service")`,
  );
}

/** PUT a file to a presigned upload URL with progress (fetch reports none for uploads). */
export function putFile(url, file, headers, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    for (const [name, value] of Object.entries(headers || {})) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (e) => e.lengthComputable && onProgress(e.loaded / e.total));
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve();
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      reject(new ApiError(xhr.status, body?.code || "upload_failed", body?.detail || `upload refused (${xhr.status})`));
    });
    xhr.addEventListener("error", () => reject(uploadFailure(url)));
    xhr.send(file);
  });
}

/** Upload one file as an asset of `kind` ("video" or "speech"); resolves to the asset id. */
export async function upload(file, kind, onProgress = () => {}) {
  const made = await api("/v1/uploads", {
    method: "POST",
    // the URL is signed for the file's exact size
    json: { kind, size: file.size, filename: file.name.slice(0, 300), content_type: (file.type || "").slice(0, 100) },
  });
  await putFile(made.upload_url, file, made.headers, onProgress);
  return made.id;
}

/** The server-sent events of `path` as {event, data} objects, until the server ends the stream. */
export async function* events(path, signal) {
  const response = await fetch(path, { headers: authorization(), signal, cache: "no-store" });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "message";
  let data = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).replace(/\r$/, "");
      buffer = buffer.slice(end + 1);
      if (line === "") {
        if (data) yield { event, data: JSON.parse(data) };
        event = "message";
        data = "";
      } else if (line.startsWith("event:")) {
        event = line.slice(6).trim();
      } else if (line.startsWith("data:")) {
        data += line.slice(5).trimStart();
      }
    }
  }
}
