import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules', 'dist', 'packages/*/dist', '.jobscope', 'test-artifacts'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        fetch: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Rooms a newcomer can hold in their head: no file over 500 lines, no function over 80.
    files: ['src/**/*.ts', 'packages/*/src/**/*.ts', 'dashboard/**/*.js'],
    rules: {
      'max-lines': ['error', { max: 500 }],
      'max-lines-per-function': ['error', { max: 80 }],
    },
  },
  {
    // The floors: runtime/ (the worker host) and server/ (HTTP) stand on control/, token/, jobs/, http/, run/ and redis/;
    // nothing on a lower floor imports from them.
    files: ['src/control/**', 'src/token/**', 'src/jobs/**', 'src/http/**', 'src/run/**', 'src/redis/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/runtime/*', '**/runtime/**'], message: 'runtime/ stands above this floor: import downwards only.' },
            { group: ['**/server/*', '**/server/**'], message: 'server/ stands above this floor: import downwards only.' },
          ],
        },
      ],
    },
  },
  {
    // jobscope's pages (dashboard/app.js, lib/, pages/): browser ES modules.
    files: ['dashboard/**/*.js'],
    languageOptions: {
      globals: {
        window: 'readonly',
        document: 'readonly',
        location: 'readonly',
        history: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        alert: 'readonly',
        Node: 'readonly',
        URLSearchParams: 'readonly',
        ResizeObserver: 'readonly',
      },
    },
  },
);
