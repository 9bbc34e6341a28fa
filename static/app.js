// Copy and show buttons for secrets shown once. The pages work without this file.
document.addEventListener("click", (e) => {
  const copy = e.target.closest("[data-copy]");
  if (copy) {
    const input = document.getElementById(copy.dataset.copy);
    navigator.clipboard.writeText(input.value).then(() => {
      copy.textContent = "Copied ✓";
      setTimeout(() => { copy.textContent = "Copy"; }, 2000);
    });
  }
  const reveal = e.target.closest("[data-reveal]");
  if (reveal) {
    const input = document.getElementById(reveal.dataset.reveal);
    const shown = input.type === "text";
    input.type = shown ? "password" : "text";
    reveal.textContent = shown ? "Show" : "Hide";
  }
});
