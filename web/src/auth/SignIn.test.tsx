// The sign-in form: required fields are checked before anything is sent; the return path never leaves
// the site.
import { render, screen, fireEvent, waitFor } from '@testing-library/react';
import { MemoryRouter } from 'react-router-dom';
import { Provider } from 'react-redux';
import { describe, expect, it } from 'vitest';
import { store } from '../store';
import { I18nProvider } from '../i18n';
import SignIn, { safeNext } from './SignIn';

describe('sign-in', () => {
  it('asks for both fields before sending', async () => {
    render(
      <Provider store={store}>
        <I18nProvider>
          <MemoryRouter initialEntries={['/sign-in?next=/datasets']}>
            <SignIn />
          </MemoryRouter>
        </I18nProvider>
      </Provider>,
    );
    expect(screen.getByText('Sign in to continue where you were.')).toBeInTheDocument();
    fireEvent.click(screen.getByRole('button', { name: /sign in/i }));
    await waitFor(() => expect(screen.getAllByText('Required')).toHaveLength(2), { timeout: 10000 });
  }, 30000);

  it('follows only paths of this site after sign-in', () => {
    expect(safeNext('/training/1?x=2')).toBe('/training/1?x=2');
    expect(safeNext('//evil.example/')).toBe('/');
    expect(safeNext('https://evil.example/')).toBe('/');
    expect(safeNext('/sign-in')).toBe('/');
    expect(safeNext(null)).toBe('/');
  });
});
