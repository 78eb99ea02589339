// Small progressive enhancements; every page works without them.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy-target]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copyTarget);
  if (!source) return;
  const done = () => { button.textContent = "Copied"; };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(source.value || source.textContent.trim()).then(done);
    return;
  }
  // No clipboard API (plain HTTP away from localhost): select the text so Ctrl+C copies it.
  if (source.select) source.select();
  if (document.execCommand && document.execCommand("copy")) done();
  else button.textContent = "Press Ctrl+C";
});

// Emails pages (mailer/web/emails.py) ------------------------------------------------------------

// A form that came back with errors: move focus to its summary so it is read out first.
document.addEventListener("DOMContentLoaded", () => {
  const summary = document.querySelector("[data-error-summary]");
  if (summary) summary.focus();
});

// The send form: refuse attachments over the size limit before uploading them (the server
// would refuse the whole request), and show "Sending…" so a second click is not a second email.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("[data-send-form]");
  if (!form) return;
  const input = form.querySelector("input[type=file][data-max-bytes]");
  if (input) {
    const limit = Number(input.dataset.maxBytes);
    const encoded = Array.from(input.files).reduce((sum, f) => sum + Math.ceil(f.size / 3) * 4, 0);
    const note = document.getElementById(`${input.id}_clientError`);
    if (encoded > limit) {
      event.preventDefault();
      const message = `The attachments are too large: about ${Math.floor(limit * 3 / 4 / 1048576)} MB in all at most.`;
      if (note) {
        note.textContent = message;
      } else {
        const div = document.createElement("div");
        div.id = `${input.id}_clientError`;
        div.className = "invalid-feedback d-block";
        div.setAttribute("role", "alert");
        div.textContent = message;
        input.after(div);
        input.setAttribute("aria-describedby", `${div.id} ${input.getAttribute("aria-describedby") || ""}`.trim());
      }
      input.classList.add("is-invalid");
      input.focus();
      return;
    }
  }
  const button = form.querySelector("button[type=submit][data-sending-text]");
  if (button) {
    button.dataset.label = button.textContent;
    button.textContent = button.dataset.sendingText;
    button.disabled = true;
  }
});

// Back to a page kept in the browser's cache: the send button works again.
window.addEventListener("pageshow", () => {
  document.querySelectorAll("button[data-sending-text][disabled]").forEach((button) => {
    button.disabled = false;
    if (button.dataset.label) button.textContent = button.dataset.label;
  });
});

// A queued or sending email: reload its page until the outcome is known.
document.addEventListener("DOMContentLoaded", () => {
  const waiting = document.querySelector("[data-refresh-seconds]");
  if (waiting) setTimeout(() => window.location.reload(), Number(waiting.dataset.refreshSeconds) * 1000);
});

document.addEventListener("change", (event) => {
  const input = event.target.closest("input[type=file][data-max-bytes]");
  const note = input && document.getElementById(`${input.id}_clientError`);
  if (note) note.textContent = "";
});
