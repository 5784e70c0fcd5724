// Run designer niceties: load a YAML file into the spec textarea; typing custom LoRA targets picks "custom".

const file = document.getElementById("spec-file");
const yamlText = document.getElementById("spec-yaml");
file?.addEventListener("change", async () => {
  const chosen = file.files?.[0];
  if (chosen) yamlText.value = await chosen.text();
});

const names = document.getElementById("f-lora-target-modules-names");
const customRadio = document.getElementById("f-lora-target-modules-custom");
names?.addEventListener("input", () => {
  if (customRadio && names.value.trim()) customRadio.checked = true;
});
