import { controlPlaneSuite } from './suite.ts';

controlPlaneSuite('postgres');
