// A model's chat template (Jinja, as HF transformers renders it) turning OpenAI chat
// messages into one prompt string.
import { Template } from "@huggingface/jinja";

export class ChatTemplateError extends Error {
  override name = "ChatTemplateError";
}

export interface ChatMessage {
  role: string;
  content: string;
}

export class ChatTemplate {
  readonly #template: Template;
  readonly #specialTokens: Readonly<Record<string, string>>;

  /** `specialTokens`: bos_token, eos_token, … as tokenizer_config.json names them. */
  constructor(source: string, specialTokens: Readonly<Record<string, string>>) {
    try {
      this.#template = new Template(source);
    } catch (error) {
      throw new ChatTemplateError(`chat template does not parse: ${(error as Error).message}`);
    }
    this.#specialTokens = specialTokens;
  }

  /**
   * @example template.render([{ role: "user", content: "Hi" }], true)
   *   // "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n" for ChatML
   */
  render(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
    try {
      return this.#template.render({
        ...this.#specialTokens,
        messages,
        add_generation_prompt: addGenerationPrompt,
      });
    } catch (error) {
      // Also what a template's raise_exception(...) throws when it refuses a conversation
      // (e.g. roles that do not alternate); it reaches the client as a 400.
      throw new ChatTemplateError(`chat template failed: ${(error as Error).message}`);
    }
  }
}
