import { SluiceError } from '../../sdk/errors.ts';
import { EXIT } from '../exit-codes.ts';
import { defineCommand, parseCommand } from '../options.ts';

export const completionCommand = defineCommand({
  name: 'completion',
  usage: 'sluice completion bash|zsh',
  summary: 'Print a shell completion script for bash or zsh.',
  positionals: ['SHELL'],
  options: {},
});

const SHELLS = ['bash', 'zsh'] as const;

/** Per command (its first word, then the words after it), the options it takes. */
interface CompletionTable {
  commands: string[];
  /** `server`, `server token create` → `--port ...`. */
  options: Map<string, string[]>;
}

async function completionTable(): Promise<CompletionTable> {
  // Imported here: main.ts imports this module lazily, so there is no cycle at load time.
  const { COMMANDS } = await import('../main.ts');
  const options = new Map<string, string[]>();
  for (const entry of COMMANDS) {
    const { spec } = await entry.load();
    const flags = Object.entries(spec.options).flatMap(([name, o]) => [
      `--${name}`,
      ...(o.short ? [`-${o.short}`] : []),
    ]);
    options.set(entry.name, [...flags, '--help']);
  }
  const commands = [...new Set(COMMANDS.map((c) => c.name.split(' ')[0]!))];
  return { commands, options };
}

function bashScript(table: CompletionTable): string {
  const cases = [...table.options]
    .sort((a, b) => b[0].length - a[0].length)
    .map(([name, flags]) => `    "${name}"*) opts="${flags.join(' ')}" ;;`)
    .join('\n');
  return `# sluice completion for bash: add to ~/.bashrc
#   source <(sluice completion bash)
_sluice() {
  local cur="\${COMP_WORDS[COMP_CWORD]}"
  if [[ $COMP_CWORD -eq 1 ]]; then
    COMPREPLY=($(compgen -W "${table.commands.join(' ')} --help --version" -- "$cur"))
    return
  fi
  local line="\${COMP_WORDS[*]:1:COMP_CWORD-1}" opts=""
  case "$line" in
${cases}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -o filenames -F _sluice sluice
`;
}

function zshScript(table: CompletionTable): string {
  const cases = [...table.options]
    .sort((a, b) => b[0].length - a[0].length)
    .map(([name, flags]) => `    "${name}"*) opts=(${flags.join(' ')}) ;;`)
    .join('\n');
  return `#compdef sluice
# sluice completion for zsh: add to ~/.zshrc (after compinit)
#   source <(sluice completion zsh)
_sluice() {
  if (( CURRENT == 2 )); then
    compadd -- ${table.commands.join(' ')} --help --version
    return
  fi
  local line="\${(j: :)words[2,CURRENT-1]}"
  local -a opts
  case "$line" in
${cases}
  esac
  if [[ "$PREFIX" == -* ]]; then
    compadd -- $opts
  else
    _files
  fi
}
compdef _sluice sluice
`;
}

export async function completion(argv: string[]): Promise<number> {
  const { positionals } = parseCommand(completionCommand, argv);
  const shell = positionals[0]!;
  if (!(SHELLS as readonly string[]).includes(shell)) {
    throw new SluiceError('SLUICE_USAGE', `no completion for "${shell}"; shells: ${SHELLS.join(', ')}`);
  }
  const table = await completionTable();
  process.stdout.write(shell === 'bash' ? bashScript(table) : zshScript(table));
  return EXIT.ok;
}
