// The template page's live preview (mailer/web/templates.py): as the template or its sample
// variables change, the page's preview endpoint renders them with the sandbox a send uses, and
// the preview shows the subject, the text part and the HTML part (in a frame that runs no
// script). Without this script the page still shows the preview of what was last saved.
document.addEventListener("DOMContentLoaded", () => {
  const panel = document.querySelector("[data-template-preview]");
  const form = panel && document.getElementById(panel.dataset.form);
  if (!form) return;
  const errors = panel.querySelector("[data-preview-errors]");
  const subject = panel.querySelector("[data-preview-subject]");
  const text = panel.querySelector("[data-preview-text]");
  const html = panel.querySelector("[data-preview-html]");
  let timer = null;
  let latest = 0;

  const showProblems = (message, problems) => {
    errors.replaceChildren();
    const lead = document.createElement("p");
    lead.className = "mb-1";
    lead.textContent = message;
    errors.append(lead);
    const entries = Object.entries(problems || {});
    if (entries.length) {
      const list = document.createElement("ul");
      list.className = "mb-0";
      for (const [field, messages] of entries) {
        for (const problem of messages) {
          const item = document.createElement("li");
          const name = document.createElement("code");
          name.textContent = field;
          item.append(name, `: ${problem}`);
          list.append(item);
        }
      }
      errors.append(list);
    }
    errors.classList.remove("d-none");
  };

  const showRendered = (answer) => {
    errors.classList.add("d-none");
    errors.replaceChildren();
    subject.textContent = answer.subject;
    text.textContent = answer.text;
    html.srcdoc = answer.html;
  };

  const refresh = async () => {
    const mine = ++latest;
    let answer = null;
    try {
      const response = await fetch(panel.dataset.previewUrl, {
        method: "POST",
        body: new FormData(form), // carries the form's CSRF token
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (response.ok) answer = await response.json();
    } catch {
      answer = null;
    }
    if (mine !== latest) return; // a newer preview is on its way
    if (!answer) {
      showProblems("The preview could not be loaded: is the connection down, or has your session ended?");
    } else if (answer.ok) {
      showRendered(answer);
    } else {
      showProblems(answer.message, answer.errors);
    }
  };

  form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
});
