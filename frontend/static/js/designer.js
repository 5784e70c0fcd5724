// Run designer niceties: load a YAML file into the spec textarea, and a prompt file into the sample prompts;
// typing custom LoRA targets picks "custom"; picking a preset applies it at once (the server fills the form,
// keeping the chosen model and dataset).

const file = document.getElementById("spec-file");
const yamlText = document.getElementById("spec-yaml");
file?.addEventListener("change", async () => {
  const chosen = file.files?.[0];
  if (chosen) yamlText.value = await chosen.text();
});

// A file input with data-fills="<id>" loads its file's text into that field (checked by the server on submit).
for (const picker of document.querySelectorAll("input[type=file][data-fills]")) {
  picker.addEventListener("change", async () => {
    const target = document.getElementById(picker.dataset.fills);
    const chosen = picker.files?.[0];
    if (!target || !chosen) return;
    target.value = await chosen.text();
    target.dispatchEvent(new Event("input", { bubbles: true }));
  });
}

const names = document.getElementById("f-lora-target-modules-names");
const customRadio = document.getElementById("f-lora-target-modules-custom");
names?.addEventListener("input", () => {
  if (customRadio && names.value.trim()) customRadio.checked = true;
});

const presetSelect = document.getElementById("preset-select");
const applyPreset = document.getElementById("apply-preset");
presetSelect?.addEventListener("change", () => {
  if (presetSelect.value) applyPreset?.click();
});
// The preset links work without JS (a fresh form); with JS they post the form so its choices survive.
for (const link of document.querySelectorAll("a.preset[data-preset]")) {
  link.addEventListener("click", (event) => {
    if (!presetSelect || !applyPreset) return;
    event.preventDefault();
    presetSelect.value = link.dataset.preset;
    applyPreset.click();
  });
}
