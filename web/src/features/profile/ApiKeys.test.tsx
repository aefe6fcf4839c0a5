// The API keys card: the list, the created key's secret shown once (copy, warning, gone after closing), a
// revocation only after its confirmation. The API hooks are stand-ins (the slice itself is tested elsewhere).
import { act, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { I18nProvider } from '../../i18n';
import type { ApiKeyList, CreatedApiKey } from '../../api/types';

const hooks = vi.hoisted(() => ({
  list: { items: [] as unknown[] } as { items: unknown[] },
  create: vi.fn(),
  revoke: vi.fn(),
}));

vi.mock('../../api/api', () => ({
  useApiKeysQuery: () => ({ data: hooks.list, isLoading: false, error: undefined, refetch: vi.fn() }),
  useCreateApiKeyMutation: () => [(body: { name: string }) => ({ unwrap: () => hooks.create(body) }), { isLoading: false }],
  useRevokeApiKeyMutation: () => [(id: string) => ({ unwrap: () => hooks.revoke(id) }), { isLoading: false }],
}));

const { default: ApiKeysCard, CreatedKeyModal, curlExample } = await import('./ApiKeys');

const SECRET = 'bsk_4fQx9ZtA_the_rest_of_the_secret';
const created: CreatedApiKey = { id: 'k2', name: 'ci <b>pipeline</b>', prefix: 'bsk_4fQx9ZtA', created_at: '2024-05-01T10:00:00Z', secret: SECRET };
const listed: ApiKeyList = {
  items: [
    { id: 'k1', name: 'laptop', prefix: 'bsk_aaaaaaaa', created_at: '2024-04-01T10:00:00Z', last_used_at: null },
    { id: 'k3', name: 'server', prefix: 'bsk_bbbbbbbb', created_at: '2024-04-02T10:00:00Z', last_used_at: '2024-04-03T10:00:00Z' },
  ],
};

function renderWith(ui: React.ReactElement) {
  localStorage.setItem('bonsai.lang', 'en');
  return render(<I18nProvider>{ui}</I18nProvider>);
}

beforeEach(() => {
  hooks.list = { items: [] };
  hooks.create.mockReset();
  hooks.revoke.mockReset();
});

describe('the created API key modal', () => {
  it('shows the secret with a warning and copies it', async () => {
    const writeText = vi.fn(async () => {});
    Object.defineProperty(navigator, 'clipboard', { value: { writeText }, configurable: true });
    const onClose = vi.fn();
    renderWith(<CreatedKeyModal created={created} onClose={onClose} />);
    expect(await screen.findByTestId('api-key-secret')).toHaveValue(SECRET);
    expect(screen.getByTestId('api-key-warning')).toHaveTextContent('shown only this once');
    expect(screen.getByText('API key “ci <b>pipeline</b>” created')).toBeInTheDocument();
    fireEvent.click(screen.getByTestId('api-key-copy'));
    await waitFor(() => expect(writeText).toHaveBeenCalledWith(SECRET));
    await waitFor(() => expect(screen.getByTestId('api-key-done')).toHaveTextContent('Done'));
    fireEvent.click(screen.getByTestId('api-key-done'));
    expect(onClose).toHaveBeenCalledTimes(1);
  }, 30000);

  it('names the key in the usage example', () => {
    expect(curlExample('https://bonsai.example', SECRET)).toContain(`curl https://bonsai.example/v1/chat/completions \\\n  -H "Authorization: Bearer ${SECRET}"`);
    expect(curlExample('https://bonsai.example')).toContain('Bearer $BONSAI_API_KEY');
  });
});

describe('the API keys card', () => {
  it('says when there are no keys', async () => {
    renderWith(<ApiKeysCard />);
    expect(await screen.findByText('No API keys yet')).toBeInTheDocument();
    expect(screen.getByTestId('api-key-curl')).toHaveTextContent(`${window.location.origin}/v1/chat/completions`);
  }, 30000);

  it('lists the keys, shows a new secret once, and forgets it when the modal closes', async () => {
    hooks.list = listed;
    hooks.create.mockResolvedValue(created);
    renderWith(<ApiKeysCard />);
    const table = await screen.findByTestId('api-key-table');
    expect(within(table).getByText('laptop')).toBeInTheDocument();
    expect(within(table).getByText('never')).toBeInTheDocument();
    expect(within(table).getByText('bsk_bbbbbbbb…')).toBeInTheDocument();
    // A name is required.
    fireEvent.click(screen.getByTestId('api-key-create'));
    await waitFor(() => expect(screen.getByText('Required')).toBeInTheDocument(), { timeout: 10000 });
    expect(hooks.create).not.toHaveBeenCalled();
    fireEvent.change(screen.getByLabelText('Name'), { target: { value: '  ci <b>pipeline</b> ' } });
    fireEvent.click(screen.getByTestId('api-key-create'));
    await waitFor(() => expect(hooks.create).toHaveBeenCalledWith({ name: 'ci <b>pipeline</b>' }), { timeout: 10000 });
    expect(await screen.findByTestId('api-key-secret')).toHaveValue(SECRET);
    expect(screen.getByText(/Bearer bsk_4fQx9ZtA_the_rest_of_the_secret/)).toBeInTheDocument();
    fireEvent.click(screen.getByTestId('api-key-done'));
    await waitFor(() => expect(document.body.innerHTML).not.toContain(SECRET), { timeout: 10000 });
  }, 30000);

  it('revokes a key only once confirmed', async () => {
    hooks.list = listed;
    hooks.revoke.mockResolvedValue(undefined);
    renderWith(<ApiKeysCard />);
    const buttons = await screen.findAllByTestId('api-key-revoke');
    fireEvent.click(buttons[1]);
    expect(hooks.revoke).not.toHaveBeenCalled();
    const confirm = await screen.findByText('Revoke the key “server”? Programs using it are refused at once.');
    const popover = confirm.closest('.ant-popover') as HTMLElement;
    await act(async () => {
      fireEvent.click(within(popover).getByRole('button', { name: 'Revoke' }));
    });
    await waitFor(() => expect(hooks.revoke).toHaveBeenCalledWith('k3'));
  }, 30000);
});
