import { Readable, Writable } from 'node:stream';
import { sinkConformance, sourceConformance } from '../../sdk/testing.ts';
import type { RecordValue } from '../../sdk/types.ts';
import { createStdinSource, createStdoutSink, stdinSourceConfig, stdoutSinkConfig } from './index.ts';

const jsonl = Array.from({ length: 60 }, (_, i) => JSON.stringify({ i, s: `v${i}` })).join('\n');
sourceConformance('stdin (jsonl)', {
  create: (ctx) =>
    createStdinSource(
      stdinSourceConfig.parse({}),
      ctx,
      Readable.from([Buffer.from(jsonl.slice(0, 100)), Buffer.from(jsonl.slice(100))]),
    ),
  expectedRecords: 60,
});

const csv = `a,b\n${Array.from({ length: 40 }, (_, i) => `${i},"x\ny"`).join('\n')}\n`;
sourceConformance('stdin (csv)', {
  create: (ctx) =>
    createStdinSource(stdinSourceConfig.parse({ format: 'csv' }), ctx, Readable.from([Buffer.from(csv)])),
  expectedRecords: 40,
});

for (const format of ['jsonl', 'csv'] as const) {
  let text = '';
  sinkConformance(`stdout (${format})`, {
    create: () =>
      createStdoutSink(
        stdoutSinkConfig.parse({ format }),
        new Writable({
          write(chunk, _enc, cb) {
            text += String(chunk);
            cb();
          },
        }),
      ),
    readBack: async (): Promise<RecordValue[]> => {
      const lines = text.split('\n').filter(Boolean);
      if (format === 'jsonl') return lines.map((l) => JSON.parse(l) as RecordValue);
      const [header, ...rows] = lines;
      const names = header?.split(',') ?? [];
      return rows.map((row) => {
        const fields = row.split(',');
        return {
          id: Number(fields[names.indexOf('id')]),
          name: fields[names.indexOf('name')],
          amount: Number(fields[names.indexOf('amount')]),
          active: fields[names.indexOf('active')] === 'true',
        };
      });
    },
    reset: () => {
      text = '';
    },
    atomic: false,
    ...(format === 'csv' ? { unencodable: { id: 0, name: 'n', amount: 0, active: false, extra: 1 } } : {}),
  });
}
