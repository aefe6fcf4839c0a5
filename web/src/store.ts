// The Redux store: RTK Query's cache (the API slice) is the console's only server state.
import { configureStore } from '@reduxjs/toolkit';
import { api } from './api/api';

export const store = configureStore({
  reducer: { [api.reducerPath]: api.reducer },
  middleware: (getDefault) => getDefault().concat(api.middleware),
});

export type RootState = ReturnType<typeof store.getState>;
